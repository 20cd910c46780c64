"""Which expert's passages a text reads like: Lucene's BM25 over the experts' own datasets, in memory.

One collection holds every expert's passages (a passage two experts share, once, with both owners), so IDF,
and thus scores, compare between experts. An expert's score for a text is the mean BM25 score of its
`top` best passages with the text's analyzer terms as the query. `evaluate` ranks a section's experts by it;
compose's topic steering prefers the candidate that reads most like its own expert's passages rather than
another's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence

Analyze = Callable[[list[str]], list[list[str]]]  # texts in, each text's analyzer terms out

RELEVANCE_TOP = 5  # an expert's score: the mean of its best RELEVANCE_TOP passage scores


class Bm25:
    """Lucene's BM25 (the formula Elasticsearch and tantivy use) over a small in-memory collection."""

    def __init__(self, docs: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.lengths = [len(d) for d in docs]
        self.avgdl = (sum(self.lengths) / len(docs)) if docs else 0.0
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for i, d in enumerate(docs):
            for term, f in Counter(d).items():
                self.postings.setdefault(term, []).append((i, f))
        n = len(docs)
        self.idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self.postings.items()}
        self.norms = [
            self.k1 * (1 - self.b + self.b * dl / self.avgdl) if self.avgdl else self.k1 for dl in self.lengths
        ]

    def __len__(self) -> int:
        return len(self.lengths)

    def scores(self, query: Sequence[str]) -> list[float]:
        """Score of every document; each query term counts once per occurrence (as Lucene's match query)."""
        out = [0.0] * len(self.lengths)
        for term, qf in Counter(t for t in query if t in self.idf).items():
            weight = qf * self.idf[term]
            for doc, f in self.postings[term]:
                out[doc] += weight * f / (f + self.norms[doc])
        return out


def rank_experts(
    query: Sequence[str],
    bm25: Bm25,
    owners: Sequence[Collection[str]],
    experts: Sequence[str],
    *,
    top: int = RELEVANCE_TOP,
) -> list[tuple[str, float]]:
    """Experts ordered by how well their passages match `query`: the mean BM25 score of each expert's `top`
    best passages (fewer passages count as zeros). `owners[i]`: the experts whose dataset holds passage i."""
    per_expert: dict[str, list[float]] = {e: [] for e in experts}
    for score, names in zip(bm25.scores(query), owners, strict=True):
        for e in names:
            if e in per_expert:
                per_expert[e].append(score)
    ranked = [(e, sum(sorted(s, reverse=True)[:top]) / top) for e, s in per_expert.items()]
    ranked.sort(key=lambda x: (-x[1], x[0]))
    return ranked


class ExpertPassages:
    """The experts' datasets as one BM25 collection (analyzer terms in, rankings out)."""

    def __init__(
        self,
        passages: Mapping[str, Sequence[str]],
        analyze: Analyze,
        *,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        owners: dict[str, set[str]] = {}
        for name, texts in passages.items():
            for text in texts:
                owners.setdefault(text, set()).add(name)
        texts = list(owners)
        self.names = list(passages)
        self.owners = [owners[t] for t in texts]
        self.bm25 = Bm25(analyze(texts), k1=k1, b=b)

    def rank(self, terms: Sequence[str], *, top: int = RELEVANCE_TOP) -> list[tuple[str, float]]:
        return rank_experts(terms, self.bm25, self.owners, self.names, top=top)

    def margin(self, terms: Sequence[str], expert: str, *, top: int = RELEVANCE_TOP) -> float:
        """How far `expert` leads the best other expert for these terms, per term (negative: it trails)."""
        if not terms:
            return 0.0
        scores = dict(self.rank(terms, top=top))
        others = [s for e, s in scores.items() if e != expert]
        return (scores.get(expert, 0.0) - max(others, default=0.0)) / len(terms)
