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
