"""The evaluation report: typed values per section and for the whole document, and their JSON form.

A metric that could not be measured (no index, no trained experts, no base model, text too short) is None
(null in JSON), and `notes` says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..composition.provenance import Provenance


@dataclass(frozen=True)
class Ranked:
    expert: str
    score: float


@dataclass(frozen=True)
class SectionReport:
    number: int  # 1-based, in document order
    heading: str
    expert: str | None  # from the outline; None without one
    chars: int
    sentences: int
    paragraphs: int
    tokens: int  # analyzer terms: the unit of the n-gram measures
    distinct_1: float | None
    distinct_2: float | None
    rep_2: float | None
    rep_4: float | None
    repeated_sentences: float | None  # share of sentences repeating an earlier one (overall: in the document)
    copy_rate: float | None  # share of the section's n-grams found in corpus passages
    copied_ngrams: int | None
    ngrams: int
    longest_copy: int | None  # analyzer terms in the longest copied span
    longest_copy_chars: int | None
    longest_copy_text: str | None
    expert_ranking: list[Ranked] | None  # every trained expert, best match first
    best_expert: str | None
    own_expert_rank: int | None  # 1 = the section's own expert matches it best
    perplexity: float | None  # under the base model
    expert_perplexity: float | None  # under the section's own expert
    perplexity_tokens: int | None  # model tokens scored
    provenance: Provenance | None = None  # each paragraph's nearest corpus passages; None without an index


@dataclass(frozen=True)
class OverallReport:
    sections: int
    chars: int
    sentences: int
    paragraphs: int
    tokens: int
    distinct_1: float | None
    distinct_2: float | None
    rep_2: float | None
    rep_4: float | None
    repeated_sentences: float | None
    copy_rate: float | None
    longest_copy: int | None
    longest_copy_chars: int | None
    longest_copy_text: str | None
    own_expert_first: int | None  # sections whose own expert ranks first …
    sections_with_expert: int | None  # … out of the sections written by a trained expert
    mean_own_expert_rank: float | None
    perplexity: float | None  # token-weighted over all sections
    expert_perplexity: float | None  # token-weighted over the sections scored under their expert
    own_dataset_share: float | None = None  # over every paragraph of a section with an expert dataset


@dataclass(frozen=True)
class Report:
    document: str
    title: str | None
    outline: str | None
    overall: OverallReport
    sections: list[SectionReport]
    notes: list[str] = field(default_factory=list)  # what was skipped, and why
    settings: dict[str, Any] = field(default_factory=dict)  # how it was measured

    def to_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self))


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x
