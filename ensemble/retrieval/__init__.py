"""retrieval stage: BM25 over passages (embedded tantivy index, or Elasticsearch), built incrementally."""

from .base import Hit, Retriever, open_retriever
from .build import IndexSummary, build_index, explain_search, search
from .explain import ClauseMatch, ExplainedHit

__all__ = [
    "ClauseMatch",
    "ExplainedHit",
    "Hit",
    "IndexSummary",
    "Retriever",
    "build_index",
    "explain_search",
    "open_retriever",
    "search",
]
