"""The values that flow from the corpus stage into retrieval and training."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str | None
    source: str  # the file it came from (and ":line" for JSONL)
    content_hash: str  # sha256 of the cleaned text (and title): unchanged hash → skip on re-index


@dataclass(frozen=True)
class Passage:
    id: str  # "<doc id>#<n>"
    doc_id: str
    n: int
    text: str
