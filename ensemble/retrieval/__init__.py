"""retrieval stage: BM25 over passages (embedded tantivy index, or Elasticsearch), built incrementally."""

from .base import Hit, Retriever, open_retriever
from .build import IndexSummary, build_index, search

__all__ = ["Hit", "IndexSummary", "Retriever", "build_index", "open_retriever", "search"]
