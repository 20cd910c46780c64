"""The embedded backend: a tantivy BM25 index on disk under `cfg.index_path`, no server.

Text is analyzed in Python (the Elasticsearch-compatible analyzers of `ensemble.text.analyzers`) and handed to
tantivy as space-joined terms through its built-in `whitespace` tokenizer: tantivy does not persist custom
tokenizers, and this route keeps every term exactly as the analyzer made it. Fields:

  id, doc_id   stored, indexed as one raw term (doc_id is the key for replacing or deleting a document)
  n            the passage number; n = 0 also carries doc_hash, so the index itself records which version of
               each document it holds (commits are atomic, so it never disagrees with the passages)
  off, len     where the passage's record (id, doc_id, original text) lies in `passages.bin`, as fast fields
  text         terms of the configured analyzer (positions and frequencies)
  text_adv     terms of its adverb-keeping variant (`adv_analyzer_name`), for the theme clause

Scores: tantivy's BM25 (k1 = 1.2, b = 0.75, Lucene's idf and one-byte length norms, times k1 + 1) equals
Elasticsearch's `_score`. One difference remains: tantivy counts every passage in N and avgdl, Lucene only the
passages with at least one term in the field, so passages whose text analyzes to nothing shift scores a bit.

Passage texts live in `passages.bin` beside tantivy's files, an append-only log whose records the index points
at: fetching 500 hits is then 500 slices of a memory map rather than 500 doc-store block decompressions (10x
faster). The log is fsynced before every tantivy commit, so a committed passage always finds its record;
records of replaced or deleted passages stay until `--rebuild` writes a fresh log.

`rebuild` writes a fresh index into a hidden sibling directory and swaps it in on `commit()`; `checkpoint()`
makes progress durable without publishing it, so a crash mid-rebuild leaves the previous index searchable and
a re-run of the rebuild resumes from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.artifacts import read_json, write_json_atomic
from ..core.errors import ArtifactError, ConfigError
from ..core.locks import held_by_other_process
from ..text.analyzers import adv_analyzer_name, analyze, index_fields
from .base import Hit, index_settings, is_blank

if TYPE_CHECKING:
    from ..config.project import ProjectConfig
    from ..corpus.types import Document, Passage

FORMAT = 2  # bump when the schema or the meaning of a field changes: old indexes then ask for --rebuild
META_NAME = "ensemble-index.json"
LOG_NAME = "passages.bin"
K1, B = 1.2, 0.75  # tantivy's BM25 constants; they cannot be changed
WRITER_HEAP = 64_000_000

Tokens = tuple[str, str]  # (text terms, text_adv terms) of one passage, space-separated


def analyze_passages(texts: Sequence[str], analyzer: str) -> list[Tokens]:
    """The terms of both indexed fields for each text: a pure function, so callers may run it in workers."""
    return index_fields(texts, analyzer)


def _schema():
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("doc_id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("n", stored=True, indexed=True)
    sb.add_text_field("doc_hash", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("off", fast=True)
    sb.add_integer_field("len", fast=True)
    sb.add_text_field("text", tokenizer_name="whitespace", index_option="position")
    sb.add_text_field("text_adv", tokenizer_name="whitespace", index_option="position")
    return sb.build()


def _meta(analyzer: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "backend": "embedded",
        "analyzer": analyzer,
        "adv_analyzer": adv_analyzer_name(analyzer),
        "settings": settings,
    }


def _recorded(path: Path) -> dict[str, Any]:
    """The settings recorded in the index at `path`; an index from before they were recorded names its analyzer."""
    meta = read_json(path / META_NAME)
    if not isinstance(meta, dict):
        return {}
    return {"analyzer": meta.get("analyzer"), **(meta.get("settings") or {})}


def stored_settings(cfg: ProjectConfig) -> dict[str, Any] | None:
    """The settings recorded in the live index (None: no index yet)."""
    return _recorded(cfg.index_path) if _is_index(cfg.index_path) else None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def staging_path(live: Path) -> Path:
    return live.with_name(f".{live.name}.rebuild")


def _old_path(live: Path) -> Path:
    return live.with_name(f".{live.name}.old")


def _recover_swap(live: Path) -> None:
    """Finish or undo a swap that a crash interrupted (see `_swap`)."""
    old = _old_path(live)
    if not old.exists():
        return
    if not live.exists():
        # Crashed between the two renames: the staged index was fully committed, so it wins.
        staged = staging_path(live)
        os.replace(staged if _is_index(staged) else old, live)
        _fsync_dir(live.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _swap(staged: Path, live: Path) -> None:
    """live → .old, staged → live, remove .old: renames and a cleanup that `_recover_swap` can finish."""
    old = _old_path(live)
    if old.exists():
        shutil.rmtree(old)
    if live.exists():
        os.replace(live, old)
    os.replace(staged, live)
    _fsync_dir(live.parent)
    shutil.rmtree(old, ignore_errors=True)


def _is_index(path: Path) -> bool:
    return (path / META_NAME).is_file() and (path / "meta.json").is_file()


def _check_meta(path: Path, analyzer: str, cfg: ProjectConfig) -> None:
    meta = read_json(path / META_NAME)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(
            f"the index at {path} was written by another version of ensemble; run `ensemble build-index --rebuild`",
            path=cfg.source,
            key="index",
        )
    if meta.get("analyzer") != analyzer:
        raise ArtifactError(
            f"the index at {path} was built with analyzer {meta.get('analyzer')!r} but ensemble.yaml sets "
            f"{analyzer!r}; run `ensemble build-index --rebuild`",
            path=cfg.source,
            key="index.analyzer",
        )


def _create(path: Path, analyzer: str, settings: dict[str, Any]) -> None:
    """A new empty index at `path`, made beside it and renamed into place so it is never half-created."""
    import tantivy

    tmp = path.with_name(f".{path.name}.new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_json_atomic(tmp / META_NAME, _meta(analyzer, settings))
    tantivy.Index(_schema(), path=str(tmp), reuse=False)
    if path.exists():  # an empty directory the user made for the index
        path.rmdir()
    os.replace(tmp, path)
    _fsync_dir(path.parent)


_HEAD = struct.Struct("<II")  # byte lengths of id and doc_id; the text runs to the end of the record


class PassageLog:
    """Append-only records (id, doc_id, text), read back by (offset, length) through a memory map."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: Any = None
        self._end = 0
        self._map: mmap.mmap | None = None

    def append(self, pid: str, doc_id: str, text: str) -> tuple[int, int]:
        if self._out is None:
            self._out = open(self.path, "ab")  # noqa: SIM115 - held open across many upserts
            self._end = self._out.seek(0, os.SEEK_END)  # after any torn tail a crash left: never referenced
        a, b = pid.encode("utf-8"), doc_id.encode("utf-8")
        record = _HEAD.pack(len(a), len(b)) + a + b + text.encode("utf-8")
        self._out.write(record)
        offset = self._end
        self._end += len(record)
        return offset, len(record)

    def sync(self) -> None:
        """Durable before the index that points into it commits."""
        if self._out is not None:
            self._out.flush()
            os.fsync(self._out.fileno())

    def read(self, offset: int, length: int) -> tuple[str, str, str]:
        end = offset + length
        if self._map is None or end > len(self._map):
            self._remap(end)
        assert self._map is not None
        a, b = _HEAD.unpack_from(self._map, offset)
        start = offset + _HEAD.size
        rec = self._map[start:end]
        return rec[:a].decode("utf-8"), rec[a : a + b].decode("utf-8"), rec[a + b :].decode("utf-8")

    def _remap(self, needed: int) -> None:
        if self._out is not None:
            self._out.flush()
        if self._map is not None:
            self._map.close()
            self._map = None
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < needed:
                raise ArtifactError(
                    f"{self.path} is shorter than the index expects; run `ensemble build-index --rebuild`",
                    path=self.path,
                )
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._out is not None:
            self._out.close()
            self._out = None


class EmbeddedRetriever:
    """`Retriever` on a tantivy index. Not thread-safe; one writer per index (build-index holds a lock).

    Analysis happens client-side: build-index may compute `analyze_passages(texts, self.client_analyzer)` in
    worker processes and hand the result to `upsert(..., tokens=...)`."""

    def __init__(self, path: Path, live: Path, analyzer: str, *, rebuild: bool) -> None:
        import tantivy

        self._tantivy = tantivy
        self.path = path
        self.live = live
        self.client_analyzer = analyzer
        self.adv_analyzer = adv_analyzer_name(analyzer)
        self._rebuild = rebuild
        self._index = tantivy.Index.open(str(path))
        self._schema = self._index.schema
        self._log = PassageLog(path / LOG_NAME)
        self._writer: Any = None
        self._dirty = False

    @classmethod
    def open(cls, cfg: ProjectConfig, *, create: bool = False, rebuild: bool = False) -> EmbeddedRetriever:
        if (cfg.index.k1, cfg.index.b) != (K1, B):
            raise ConfigError(
                f"the embedded backend scores with BM25 k1={K1}, b={B} (fixed in tantivy); remove index.k1 "
                "and index.b from ensemble.yaml or use `backend: elasticsearch`",
                path=cfg.source,
                key="index.k1" if cfg.index.k1 != K1 else "index.b",
            )
        analyzer = cfg.index.analyzer
        adv_analyzer_name(analyzer)  # validates the name
        live = cfg.index_path
        if not held_by_other_process(cfg.work_path / "build-index.lock"):
            _recover_swap(live)  # else that build may be between the renames of its swap right now
        if live.exists() and not _is_index(live) and (not live.is_dir() or any(live.iterdir())):
            raise ArtifactError(
                f"{live} exists but is not an ensemble index; move it away or set index.path to another directory",
                path=cfg.source,
                key="index.path",
            )
        if rebuild:
            staged = staging_path(live)
            if _is_index(staged):
                try:
                    _check_meta(staged, analyzer, cfg)
                except ArtifactError:
                    shutil.rmtree(staged)
            else:
                shutil.rmtree(staged, ignore_errors=True)
            if not staged.exists():
                _create(staged, analyzer, index_settings(cfg))
            return cls(staged, live, analyzer, rebuild=True)
        if not _is_index(live):
            if not create:
                raise ArtifactError(f"no index at {live}; run `ensemble build-index` first", path=cfg.source)
            _create(live, analyzer, index_settings(cfg))
        _check_meta(live, analyzer, cfg)
        if create:  # only build-index opens with create, and it holds the work_dir's build lock
            _remove_stale_temp_files(live)
        return cls(live, live, analyzer, rebuild=False)

    # -- writing -------------------------------------------------------------------------------------------

    def _w(self):
        if self._writer is None:
            try:
                self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
            except ValueError as e:
                if "LockBusy" not in str(e):
                    raise
                raise ArtifactError(
                    f"another process is writing the index at {self.path}; wait for it to finish",
                    path=self.path,
                ) from None
        return self._writer

    def doc_hashes(self) -> dict[str, str]:
        searcher = self._searcher()
        total = searcher.num_docs
        if total == 0:
            return {}
        firsts = self._tantivy.Query.term_query(self._schema, "n", 0)
        out: dict[str, str] = {}
        for _, addr in searcher.search(firsts, limit=total, count=False).hits:
            doc = searcher.doc(addr)
            out[doc.get_first("doc_id")] = doc.get_first("doc_hash")
        return out

    def upsert(
        self, docs: Sequence[tuple[Document, Sequence[Passage]]], *, tokens: Sequence[Tokens] | None = None
    ) -> None:
        """`tokens`: `analyze_passages` of every passage, in order, when the caller analyzed them already."""
        texts = [p.text for _, passages in docs for p in passages]
        if tokens is None:
            tokens = analyze_passages(texts, self.client_analyzer)
        elif len(tokens) != len(texts):
            raise ValueError(f"got terms for {len(tokens)} passages, expected {len(texts)}")
        writer = self._w()
        Document_ = self._tantivy.Document
        append = self._log.append
        i = 0
        for doc, passages in docs:
            writer.delete_documents_by_term("doc_id", doc.id)
            for p in passages:
                main, adv = tokens[i]
                i += 1
                offset, length = append(p.id, doc.id, p.text)
                d = Document_(id=p.id, doc_id=doc.id, n=p.n, off=offset, len=length)
                if p.n == 0:
                    d.add_text("doc_hash", doc.content_hash)
                # Lucene leaves a field without terms out of N and avgdl; an absent field comes closest.
                if main:
                    d.add_text("text", main)
                if adv:
                    d.add_text("text_adv", adv)
                writer.add_document(d)
        self._dirty = True

    def delete(self, doc_ids: Iterable[str]) -> None:
        writer = self._w()
        for doc_id in doc_ids:
            writer.delete_documents_by_term("doc_id", doc_id)
            self._dirty = True

    def checkpoint(self) -> None:
        """Make everything written so far durable (an interrupted build resumes from here) without publishing
        a rebuild; for an ordinary build this is the same as `commit`."""
        if self._writer is not None and self._dirty:
            self._log.sync()
            self._writer.commit()
            self._dirty = False
            self._index.reload()

    def commit(self) -> None:
        self.checkpoint()
        self._release_writer()  # lets another process write next; a later upsert opens a new writer
        if self._rebuild:
            self._log.close()
            _swap(self.path, self.live)
            self.path = self.live
            self._rebuild = False
            self._index = self._tantivy.Index.open(str(self.live))
            self._schema = self._index.schema
            self._log = PassageLog(self.live / LOG_NAME)

    def _release_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            if self._dirty:
                writer.rollback()
                self._dirty = False
            writer.wait_merging_threads()

    def close(self) -> None:
        """Drop uncommitted writes and release the index (an unfinished rebuild stays staged for a resume)."""
        self._release_writer()
        self._log.close()

    # -- reading -------------------------------------------------------------------------------------------

    def _searcher(self):
        return self._index.searcher()

    def _match(self, field: str, terms: list[str]):
        """Elasticsearch's `match` with the default `or` operator: one term query per term, duplicates kept
        (a repeated query word counts twice there too)."""
        Query = self._tantivy.Query
        clauses = [Query.term_query(self._schema, field, t, index_option="freq") for t in terms]
        if len(clauses) == 1:
            return clauses[0]
        Should = self._tantivy.Occur.Should
        return Query.boolean_query([(Should, q) for q in clauses])

    def _clauses(self, query: str, theme: str | None) -> list[tuple[str, str, list[str]]]:
        """(clause, field, terms) of the contract's query (see `Retriever.search`); [] when it matches nothing."""
        terms = analyze(query, self.client_analyzer)
        if theme is None:
            return [("query", "text", terms)] if terms else []  # Elasticsearch: a match without terms
        theme_terms = analyze(theme, self.adv_analyzer)
        if not theme_terms or (not is_blank(query) and not terms):
            return []
        return [("theme", "text_adv", theme_terms)] + ([("query", "text", terms)] if terms else [])

    def _query(self, clauses: list[tuple[str, str, list[str]]]):
        """Every clause required (the query's as minimum_should_match 1 makes Elasticsearch's should clause);
        a boolean query scores the sum of its clauses, as Elasticsearch does."""
        Must = self._tantivy.Occur.Must
        matches = [self._match(field, terms) for _, field, terms in clauses]
        return matches[0] if len(matches) == 1 else self._tantivy.Query.boolean_query([(Must, m) for m in matches])

    def search(self, query: str, theme: str | None = None, k: int = 10) -> list[Hit]:
        if k <= 0:
            raise ConfigError(f"k must be a positive number of passages, got {k}", key="k")
        clauses = self._clauses(query, theme)
        if not clauses:
            return []
        searcher = self._searcher()
        return self._hits(searcher, searcher.search(self._query(clauses), limit=k, count=False).hits)

    def clause_scores(self, ids: Sequence[str], query: str, theme: str | None = None) -> dict[str, dict[str, float]]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        Query, Must = self._tantivy.Query, self._tantivy.Occur.Must
        only = Query.const_score_query(Query.term_set_query(self._schema, "id", ids), 0.0)
        searcher = self._searcher()
        out: dict[str, dict[str, float]] = {}
        for name, field, terms in self._clauses(query, theme):
            q = Query.boolean_query([(Must, only), (Must, self._match(field, terms))])
            out[name] = {h.id: h.score for h in self._hits(searcher, searcher.search(q, limit=len(ids)).hits)}
        return out

    def _hits(self, searcher: Any, hits: list[tuple[float, Any]]) -> list[Hit]:
        if not hits:
            return []
        addrs = [addr for _, addr in hits]
        offsets = searcher.fast_field_values("off", addrs)
        lengths = searcher.fast_field_values("len", addrs)
        read = self._log.read
        out = []
        for (score, _), offset, length in zip(hits, offsets, lengths, strict=True):
            pid, doc_id, text = read(offset, length)
            out.append(Hit(id=pid, doc_id=doc_id, score=float(score), text=text))
        return out

    def passage_count(self) -> int:
        return self._searcher().num_docs

    def recorded_settings(self) -> dict[str, Any]:
        return _recorded(self.path)

    def record_settings(self, settings: dict[str, Any]) -> None:
        meta = read_json(self.path / META_NAME)
        write_json_atomic(self.path / META_NAME, {**meta, "settings": settings})

    def __enter__(self) -> EmbeddedRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_stale_temp_files(path: Path) -> None:
    """tantivy writes meta files through hidden `.tmpXXXXXX` files; a kill can leave one behind."""
    for stale in path.glob(".tmp*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
