"""`build-index`: corpus → passages → BM25 index, incrementally by content hash, resumable after a crash."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.locks import work_lock
from ..core.progress import NullProgress, Progress
from ..corpus.load import check_documents, corpus_bytes, read_documents
from ..corpus.passages import split_passages_many
from ..text.analyzers import speed_note
from .base import MISSING, REBUILD_SETTINGS, Hit, Retriever, changed_settings, index_settings, open_retriever
from .explain import ExplainedHit, explain_hits

if TYPE_CHECKING:
    from ..config.project import PassagesConfig, ProjectConfig
    from ..corpus.types import Document, Passage

BATCH_CHARS = 64_000  # text per unit of work: big enough to amortise, small enough to keep two workers busy
CHECKPOINT_PASSAGES = 20_000
CHECKPOINT_SECONDS = 60.0
PARALLEL_MIN_BYTES = 6_000_000  # below this (~2M Korean chars), starting worker processes costs more than it saves


@dataclass(frozen=True)
class IndexSummary:
    documents: int  # documents in the corpus now
    passages: int  # passages in the index now
    added: int
    updated: int
    deleted: int
    unchanged: int
    seconds: float


Prepared = tuple[list["Document"], list[list["Passage"]], Any]


def _prepare(docs: list[Document], passages_cfg: PassagesConfig, analyzer: str | None) -> Prepared:
    """Split a batch into passages and, for a backend that analyzes client-side, analyze them.
    Runs in the worker processes."""
    per_doc = split_passages_many(docs, passages_cfg)
    tokens = None
    if analyzer is not None:
        from .embedded import analyze_passages

        tokens = analyze_passages([p.text for ps in per_doc for p in ps], analyzer)
    return docs, per_doc, tokens


def _batches(docs: Iterable[Document]) -> Iterator[list[Document]]:
    batch: list[Document] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.text)
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _warm_up(passages_cfg: PassagesConfig, analyzer: str | None) -> None:
    """Load the sentence splitter and the analyzers once, so forked workers inherit them instead of each
    paying the start-up (kss alone takes seconds to import)."""
    from ..corpus.types import Document

    _prepare([Document("warm-up", "준비 중입니다. 곧 시작합니다.", None, "", "")], passages_cfg, analyzer)


def _ignore_interrupts() -> None:
    """Ctrl-C is for the parent to handle (it stops the pool); tracebacks from workers would be noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _fork_pool(workers: int) -> ProcessPoolExecutor | None:
    """Workers forked from this (warmed-up) process; None where fork is unavailable."""
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_interrupts)
    # With fork, the first submit starts every worker: do it now, before the index opens its threads.
    pool.submit(int).result()
    return pool


def _results(
    batches: Iterator[list[Document]],
    prepare: Callable[[list[Document]], Prepared],
    pool: ProcessPoolExecutor | None,
    ahead: int,
) -> Iterator[Prepared]:
    """Prepared batches in corpus order; with a pool, a few run ahead while the caller writes the index."""
    if pool is None:
        for batch in batches:
            yield prepare(batch)
        return
    pending: deque[Future[Prepared]] = deque()
    for batch in batches:
        pending.append(pool.submit(prepare, batch))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _Prepare:
    """Picklable `batch -> Prepared` for the worker processes."""

    def __init__(self, passages_cfg: PassagesConfig, analyzer: str | None) -> None:
        self.passages_cfg = passages_cfg
        self.analyzer = analyzer

    def __call__(self, batch: list[Document]) -> Prepared:
        return _prepare(batch, self.passages_cfg, self.analyzer)


def build_index(
    cfg: ProjectConfig,
    *,
    rebuild: bool = False,
    skip_bad: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    checkpoint_passages: int = CHECKPOINT_PASSAGES,
) -> IndexSummary:
    """Index the corpus: unchanged documents (same content hash) are skipped, changed ones replaced, removed
    ones deleted. Progress is made durable every `checkpoint_passages` passages, so re-running an interrupted
    build continues where it stopped. `workers`: processes for splitting and analysis (default: up to 2 CPUs,
    used only for corpora large enough to gain from them). The corpus is streamed: this process reads and
    cleans the next documents while the workers analyze earlier ones."""
    warn = progress.log if progress is not None else None  # library callers get Python warnings
    progress = progress or NullProgress()
    started = time.perf_counter()
    with work_lock(cfg.work_path / "build-index.lock"):
        expected_docs = check_documents(cfg, skip_bad)  # bad input fails before anything is written
        size = corpus_bytes(cfg)
        corpus = read_documents(cfg, skip_bad=skip_bad, warn=warn)
        first = next(corpus, None)  # so does a corpus with no text left after cleaning
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if size >= PARALLEL_MIN_BYTES else 1
        pool = None
        retriever: Retriever | None = None
        try:
            analyzer = _client_analyzer(cfg)
            if analyzer is not None and warn is not None:
                note = speed_note(analyzer)
                if note:
                    warn(note)
            if workers > 1:
                _warm_up(cfg.passages, analyzer)
                pool = _fork_pool(workers)
            settings = index_settings(cfg)
            why = None if rebuild else needs_rebuild(_stored_settings(cfg), settings)
            if why:
                progress.log(why)
            retriever = open_retriever(cfg, create=True, rebuild=rebuild or why is not None)
            docs = itertools.chain([first] if first is not None else [], corpus)
            summary = _index(
                retriever, docs, expected_docs, cfg.passages, progress, pool, checkpoint_passages, settings
            )
            return IndexSummary(**summary, seconds=round(time.perf_counter() - started, 3))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if retriever is not None:
                retriever.close()


def _shown(value: Any) -> str:
    return "unrecorded" if value is MISSING else repr(value)


def _changes_text(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key} {_shown(old)} → {new!r}" for key, (old, new) in changes.items())


def needs_rebuild(recorded: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why the live index must be rebuilt for `current` (a changed analyzer or BM25 parameter), or None."""
    if recorded is None:
        return None
    changes = {
        k: v
        for k, v in changed_settings(recorded, current).items()
        if k.split(".")[0] in REBUILD_SETTINGS and v[0] is not MISSING
    }
    if not changes:
        return None
    return f"index settings changed ({_changes_text(changes)}): rebuilding the index, as --rebuild does"


def reprocess_plan(recorded: dict[str, Any], current: dict[str, Any]) -> tuple[bool, str | None]:
    """(re-index every document?, why) for an index with passages built under `recorded`.

    Passage settings shape every passage; a cleaning change shows in the content hashes (of the cleaned
    text), so those documents alone are re-indexed."""
    changes = changed_settings(recorded, current)
    if not changes:
        return False, None
    everything = any(k.split(".")[0] != "clean" for k in changes)
    action = "re-indexing every document" if everything else "re-indexing the documents whose cleaned text changed"
    return everything, f"index settings changed ({_changes_text(changes)}): {action}"


def _stored_settings(cfg: ProjectConfig) -> dict[str, Any] | None:
    if cfg.index.backend == "elasticsearch":
        from .elastic import stored_settings

        return stored_settings(cfg)
    from .embedded import stored_settings

    return stored_settings(cfg)


def _client_analyzer(cfg: ProjectConfig) -> str | None:
    """The analyzer to run in Python before indexing: the embedded backend needs it, a server analyzes."""
    return cfg.index.analyzer if cfg.index.backend == "embedded" else None


def _index(
    retriever: Retriever,
    corpus: Iterable[Document],
    expected_docs: int,
    passages_cfg: PassagesConfig,
    progress: Progress,
    pool: ProcessPoolExecutor | None,
    checkpoint_passages: int,
    settings: dict[str, Any],
) -> dict[str, int]:
    known = retriever.doc_hashes()
    everything, why = reprocess_plan(retriever.recorded_settings(), settings) if known else (False, None)
    if why:
        progress.log(why)
    seen: set[str] = set()
    counts = {"todo": 0, "updated": 0}

    def todo() -> Iterator[Document]:
        for d in corpus:
            seen.add(d.id)
            if not everything and known.get(d.id) == d.content_hash:
                progress.advance("indexing", 1)
                continue
            counts["todo"] += 1
            counts["updated"] += d.id in known
            yield d

    analyzer = getattr(retriever, "client_analyzer", None)
    progress.start("indexing", total=expected_docs or None)
    since, last = 0, time.monotonic()
    written = 0
    prepare = _Prepare(passages_cfg, analyzer)
    for docs, per_doc, tokens in _results(_batches(todo()), prepare, pool, ahead=4):
        items = list(zip(docs, per_doc, strict=True))
        if tokens is not None:
            retriever.upsert(items, tokens=tokens)  # type: ignore[call-arg]  # the embedded backend's extension
        else:
            retriever.upsert(items)
        n = sum(len(ps) for ps in per_doc)
        since += n
        written += n
        progress.advance("indexing", len(docs), info=f"{written} passages")
        if since >= checkpoint_passages or time.monotonic() - last >= CHECKPOINT_SECONDS:
            retriever.checkpoint()
            since, last = 0, time.monotonic()
    removed = sorted(set(known) - seen)
    if removed:
        retriever.delete(removed)
    retriever.commit()
    retriever.record_settings(settings)
    passages = retriever.passage_count()
    progress.end("indexing", None)
    return {
        "documents": len(seen),
        "passages": passages,
        "added": counts["todo"] - counts["updated"],
        "updated": counts["updated"],
        "deleted": len(removed),
        "unchanged": len(seen) - counts["todo"],
    }


def search(cfg: ProjectConfig, query: str, theme: str | None = None, k: int = 10) -> list[Hit]:
    """Top-k passages for `query` (conjoined with `theme` when given; a blank query searches the theme alone)
    from the built index."""
    if k <= 0:
        raise ConfigError(f"k must be a positive number of passages, got {k}", key="k")
    retriever = open_retriever(cfg)
    try:
        return retriever.search(query, theme=theme, k=k)
    finally:
        retriever.close()


def explain_search(cfg: ProjectConfig, query: str, theme: str | None = None, k: int = 10) -> list[ExplainedHit]:
    """`search`, with each hit's matched theme and query terms and the score part of each clause."""
    if k <= 0:
        raise ConfigError(f"k must be a positive number of passages, got {k}", key="k")
    retriever = open_retriever(cfg)
    try:
        hits = retriever.search(query, theme=theme, k=k)
        return explain_hits(retriever, cfg.index.analyzer, hits, query, theme)
    finally:
        retriever.close()
