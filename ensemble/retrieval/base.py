"""The contract every retrieval backend implements, and the one place that picks a backend."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config.project import ProjectConfig
    from ..corpus.types import Document, Passage


@dataclass(frozen=True)
class Hit:
    id: str  # passage id "<doc id>#<n>"
    doc_id: str
    score: float  # as Elasticsearch reports _score (Lucene BM25 x (k1 + 1))
    text: str


def is_blank(query: str) -> bool:
    """A query of only whitespace: with a theme, a theme-only search."""
    return not query.strip()


REBUILD_SETTINGS = ("analyzer", "bm25")  # every term or score changes: only a new index serves them


def index_settings(cfg: ProjectConfig) -> dict[str, Any]:
    """The settings that shape an index's contents, as recorded in its metadata."""
    return {
        "analyzer": cfg.index.analyzer,
        "bm25": {"k1": cfg.index.k1, "b": cfg.index.b},
        "clean": cfg.clean.model_dump(),
        "passages": cfg.passages.model_dump(),
    }


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"passages": {"max_chars": 500}} → {"passages.max_chars": 500}."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


MISSING = object()


def changed_settings(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """dotted key → (recorded value or MISSING, current value) for every setting that differs."""
    old, new = flatten(recorded), flatten(current)
    return {k: (old.get(k, MISSING), v) for k, v in new.items() if old.get(k, MISSING) != v}


class Retriever(Protocol):
    """BM25 over passages with two analyzed fields: `text` (main analyzer) and `text.adv` (adverb-keeping)."""

    def doc_hashes(self) -> dict[str, str]:
        """doc_id → content hash of every document currently indexed."""
        ...

    def upsert(self, docs: Sequence[tuple[Document, Sequence[Passage]]]) -> None:
        """Replace all passages of these documents (idempotent: passage ids are the keys)."""
        ...

    def delete(self, doc_ids: Iterable[str]) -> None: ...

    def checkpoint(self) -> None:
        """Make everything written so far durable, so an interrupted build resumes from here; unlike `commit`,
        a rebuild is not published (searches keep the previous index until `commit`)."""
        ...

    def commit(self) -> None:
        """Make everything written so far durable and visible to searches (publishes a rebuild)."""
        ...

    def search(self, query: str, theme: str | None = None, k: int = 10) -> list[Hit]:
        """bool query: must = match(theme) on text.adv, should = match(query) on text with
        minimum_should_match 1, so a hit holds the theme AND at least one query term; score = the sum of both
        clauses. No theme: match(query). A blank query (only whitespace) with a theme searches the theme alone;
        a query whose words all analyze away (adverbs, punctuation) matches nothing, as in Elasticsearch."""
        ...

    def clause_scores(self, ids: Sequence[str], query: str, theme: str | None = None) -> dict[str, dict[str, float]]:
        """Each clause of `search(query, theme)` run alone over the passages `ids`: {"theme": {id: score},
        "query": {id: score}} (a clause the search lacks is absent; a passage it does not match too), so a
        hit's score is the sum of its parts."""
        ...

    def passage_count(self) -> int: ...

    def recorded_settings(self) -> dict[str, Any]:
        """The `index_settings` this index was built with, as far as it recorded them ({} if not at all)."""
        ...

    def record_settings(self, settings: dict[str, Any]) -> None:
        """Record `index_settings` once every passage in the index agrees with them (after `commit`)."""
        ...

    def close(self) -> None: ...


def open_retriever(cfg: ProjectConfig, *, create: bool = False, rebuild: bool = False) -> Retriever:
    """Open the configured backend. `create` makes an empty index if none exists; otherwise a missing index is an
    error telling the user to run `ensemble build-index`. `rebuild` starts a fresh index (swapped in on commit)."""
    backend = cfg.index.backend
    if backend == "embedded":
        from .embedded import EmbeddedRetriever

        return EmbeddedRetriever.open(cfg, create=create, rebuild=rebuild)
    if backend == "elasticsearch":
        from .elastic import ElasticRetriever

        return ElasticRetriever.open(cfg, create=create, rebuild=rebuild)
    raise NotImplementedError(f"Unknown index backend: {backend}.")
