"""corpus stage: read, clean and split the user's texts into passages."""

from .clean import clean_text
from .load import CorpusWarning, iter_sources, read_documents
from .passages import split_passages, split_passages_many
from .types import Document, Passage

__all__ = [
    "CorpusWarning",
    "Document",
    "Passage",
    "clean_text",
    "iter_sources",
    "read_documents",
    "split_passages",
    "split_passages_many",
]
