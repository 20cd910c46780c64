"""Text quality measures as pure functions: token lists in, numbers out.

The unit is the project's analyzer terms (for `nori`: content morphemes; particles, endings and punctuation
are dropped), the same terms BM25 indexes. That choice matters for Korean:

- repetition: particles such as 은/는/이/가 *must* recur in any Korean text; counting them would call every
  fluent text repetitive. Repeated content terms are what a reader notices as degeneration.
- copying: eight analyzer terms in a row span roughly eight content words (25-40 characters of Korean),
  a span unlikely to be shared by chance, and one that survives the re-spacing or particle changes of a
  light paraphrase. Character 8-grams were the alternative, but eight Hangul syllables are about two and a
  half words ("함께 밥을 먹었다"): common phrases would count as copies and every text would look copied.

Definitions follow the literature:
- distinct-n (Li et al., 2016): distinct n-grams / tokens.
- rep-n (Welleck et al., 2019, sequence level): 1 − distinct n-grams / n-grams.
Each returns None when the text is too short to have a single n-gram.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

Ngram = tuple[str, ...]


def ngrams(tokens: Sequence[str], n: int) -> list[Ngram]:
    if n <= 0:
        raise ValueError("n must be positive")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence[str], n: int) -> float | None:
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(tokens) if grams else None


def rep_n(tokens: Sequence[str], n: int) -> float | None:
    grams = ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else None


def repeated_share(items: Sequence[Hashable]) -> float | None:
    """Share of items equal to an earlier one (e.g. whole sentences written twice)."""
    if not items:
        return None
    seen: set[Hashable] = set()
    repeats = 0
    for x in items:
        repeats += x in seen
        seen.add(x)
    return repeats / len(items)


def normalize_sentence(sentence: str) -> str:
    return " ".join(sentence.split())


# --- copying --------------------------------------------------------------------------------------


def ngram_set(token_lists: Iterable[Sequence[str]], n: int) -> set[Ngram]:
    out: set[Ngram] = set()
    for tokens in token_lists:
        out.update(ngrams(tokens, n))
    return out


@dataclass(frozen=True)
class CopyStats:
    ngrams: int  # n-grams in the text
    copied: int  # of those, found in the reference
    longest: int  # tokens in the longest run of overlapping copied n-grams (0: nothing copied)
    span: tuple[int, int] | None  # token indices [start, end) of that run

    @property
    def rate(self) -> float | None:
        return self.copied / self.ngrams if self.ngrams else None


def copy_stats(tokens: Sequence[str], reference: Collection[Ngram], n: int) -> CopyStats:
    """How much of `tokens` appears verbatim (as n-grams) in `reference`. The longest copied span is the
    longest run of consecutive copied n-grams: r of them in a row cover r + n − 1 tokens."""
    grams = ngrams(tokens, n)
    hits = [g in reference for g in grams]
    best, best_start, run = 0, 0, 0
    for i, hit in enumerate(hits):
        run = run + 1 if hit else 0
        if run > best:
            best, best_start = run, i - run + 1
    if not best:
        return CopyStats(len(grams), 0, 0, None)
    length = best + n - 1
    return CopyStats(len(grams), sum(hits), length, (best_start, best_start + length))


# --- relevance ------------------------------------------------------------------------------------


class Bm25:
    """Lucene's BM25 (the formula Elasticsearch and tantivy use) over a small in-memory collection."""

    def __init__(self, docs: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tfs = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avgdl = (sum(self.lengths) / len(docs)) if docs else 0.0
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def __len__(self) -> int:
        return len(self.tfs)

    def scores(self, query: Sequence[str]) -> list[float]:
        """Score of every document; each query term counts once per occurrence (as Lucene's match query)."""
        q = Counter(t for t in query if t in self.idf)
        out = []
        for tf, dl in zip(self.tfs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * dl / self.avgdl) if self.avgdl else self.k1
            s = 0.0
            for term, qf in q.items():
                f = tf.get(term)
                if f:
                    s += qf * self.idf[term] * f / (f + norm)
            out.append(s)
        return out


def rank_experts(
    query: Sequence[str],
    bm25: Bm25,
    owners: Sequence[Collection[str]],
    experts: Sequence[str],
    *,
    top: int = 5,
) -> list[tuple[str, float]]:
    """Experts ordered by how well their passages match `query`: the mean BM25 score of each expert's `top`
    best passages (fewer passages count as zeros). One collection for all experts, so IDF, and thus
    scores, are comparable between experts. `owners[i]`: the experts whose dataset holds passage i."""
    per_expert: dict[str, list[float]] = {e: [] for e in experts}
    for score, names in zip(bm25.scores(query), owners, strict=True):
        for e in names:
            if e in per_expert:
                per_expert[e].append(score)
    ranked = [(e, sum(sorted(s, reverse=True)[:top]) / top) for e, s in per_expert.items()]
    ranked.sort(key=lambda x: (-x[1], x[0]))
    return ranked
