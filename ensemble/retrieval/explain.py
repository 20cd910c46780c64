"""Why a passage was found: for each hit, the terms of each clause it holds and that clause's part of its score.

Terms come from analyzing the query, the theme and the passage with the analyzers the index uses (the
`text` field's and its adverb-keeping variant's); score parts from the backend (`Retriever.clause_scores`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..text.analyzers import adv_analyzer_name, analyze, index_fields
from .base import Hit, Retriever, is_blank


@dataclass(frozen=True)
class ClauseMatch:
    field: str  # "text.adv" (the theme) or "text" (the query)
    terms: tuple[str, ...]  # the clause's analyzed terms the passage holds, in query order, once each
    score: float  # this clause's part of the hit's score

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "terms": list(self.terms), "score": self.score}


@dataclass(frozen=True)
class ExplainedHit:
    hit: Hit
    theme: ClauseMatch | None  # None: the search had no theme
    query: ClauseMatch | None  # None: a theme-only (blank query) search

    def to_dict(self) -> dict[str, Any]:
        """The hit's JSON fields plus `matched`: {"theme": {field, terms, score}, "query": {…}}."""
        h = self.hit
        matched = {name: c.to_dict() for name, c in (("theme", self.theme), ("query", self.query)) if c}
        return {"id": h.id, "doc_id": h.doc_id, "score": h.score, "text": h.text, "matched": matched}

    def summary(self) -> str:
        """One line: `theme 함께 (0.72) + query 가족 저녁 (2.79)`."""
        parts = [
            f"{name} {' '.join(c.terms) or '-'} ({c.score:.2f})"
            for name, c in (("theme", self.theme), ("query", self.query))
            if c
        ]
        return " + ".join(parts)


def matched_terms(clause_terms: Iterable[str], passage_terms: Iterable[str]) -> tuple[str, ...]:
    held = set(passage_terms)
    return tuple(dict.fromkeys(t for t in clause_terms if t in held))


def explain_hits(
    retriever: Retriever, analyzer: str, hits: Sequence[Hit], query: str, theme: str | None = None
) -> list[ExplainedHit]:
    """Explain `hits` of `retriever.search(query, theme)` on an index whose `text` field uses `analyzer`."""
    if not hits:
        return []
    parts = retriever.clause_scores([h.id for h in hits], query, theme)
    fields = index_fields([h.text for h in hits], analyzer)
    query_terms = analyze(query, analyzer)
    theme_terms = analyze(theme, adv_analyzer_name(analyzer)) if theme is not None else []
    out = []
    for h, (main, adv) in zip(hits, fields, strict=True):
        theme_part = None
        if theme is not None:
            theme_part = ClauseMatch("text.adv", matched_terms(theme_terms, adv.split()), _part(parts, "theme", h))
        query_part = None
        if theme is None or not is_blank(query):
            query_part = ClauseMatch("text", matched_terms(query_terms, main.split()), _part(parts, "query", h))
        out.append(ExplainedHit(h, theme_part, query_part))
    return out


def _part(parts: dict[str, dict[str, float]], clause: str, hit: Hit) -> float:
    return parts.get(clause, {}).get(hit.id, 0.0)
