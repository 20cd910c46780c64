"""Provenance: for every paragraph of a document, the corpus passages it is closest to.

A paragraph is a BM25 query over the index with its own terms, run twice: restricted to the section expert's
dataset passages (the retriever's `clause_scores` over their ids, so the scores are the index's own) and over
the whole corpus (`search`). Both lists are merged by score, so the top source is the nearest passage of the
whole corpus, and `in_expert_dataset` says whether it is one the section's expert was trained or validated on.
Each source carries the longest run of analyzer terms it shares with the paragraph.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    passage_id: str
    doc_id: str
    title: str  # the document's title; its id where the corpus has no title
    score: float  # BM25 of the paragraph against the passage, as the index scores it
    shared_run: int  # analyzer terms in the longest run the paragraph and the passage share
    in_expert_dataset: bool  # among the passages the section's expert was trained and validated on


@dataclass(frozen=True)
class ParagraphSources:
    text: str
    sources: list[Source]  # best score first


@dataclass(frozen=True)
class Provenance:
    own_dataset_share: float | None  # paragraphs whose top source is in the expert's dataset; None: no dataset
    paragraphs: list[ParagraphSources]
