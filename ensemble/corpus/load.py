"""Corpus files → cleaned `Document`s, streamed, with every bad input named by file and line."""

from __future__ import annotations

import glob
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config.project import CleanConfig, ProjectConfig
from ..core.artifacts import sha256_text
from ..core.errors import CorpusError
from .clean import clean_text
from .types import Document

SUFFIXES = (".jsonl", ".md", ".txt")
MAX_LINE_BYTES = 10 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_GLOB_CHARS = set("*?[")
SKIP_HINT = ", or pass --skip-bad"

Warn = Callable[[str], None]


class CorpusWarning(UserWarning):
    """A corpus problem that was skipped rather than raised (see `read_documents(warn=...)`)."""


@dataclass(frozen=True)
class Source:
    """One corpus file and the root its document ids are relative to (None: a file named directly)."""

    path: Path
    root: Path | None
    entry: int  # index into cfg.corpus


def _glob_root(pattern: Path) -> Path:
    parts = pattern.parts
    for i, part in enumerate(parts):
        if _GLOB_CHARS & set(part):
            return Path(*parts[:i])
    return pattern.parent


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _walk(top: Path) -> list[Path]:
    """Corpus files below `top`, sorted; hidden entries skipped. Unlike Path.rglob, symlinked directories are
    followed (each real directory once, so link loops end) and an unreadable directory is an error, not a
    silent gap in the corpus. Where links lead is checked by `iter_source_files`."""
    files: list[Path] = []
    seen: set[Path] = set()
    stack = [top]
    while stack:
        d = stack.pop()
        real = d.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            raise CorpusError(
                f"cannot list this directory ({e.strerror or e}); fix its permissions or remove it from the corpus",
                path=d,
            ) from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            if entry.is_dir():  # follows symlinks
                stack.append(p)
            elif entry.is_file() and p.suffix.lower() in SUFFIXES:
                files.append(p)
    return sorted(files)


def _where(cfg: ProjectConfig, missing: Path) -> Path:
    return cfg.source if cfg.source is not None else missing


def _entry_sources(cfg: ProjectConfig, i: int, entry: str) -> list[Source]:
    where = _where(cfg, cfg.resolve(entry))
    path = cfg.resolve(entry)
    if _GLOB_CHARS & set(entry):
        root = _glob_root(path)
        hits = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in hits if p.is_file() and p.suffix.lower() in SUFFIXES and not _is_hidden(p, root)]
        if not files:
            raise CorpusError(
                f"pattern {entry!r} matches no {', '.join(SUFFIXES)} files under {root}; fix the pattern",
                path=where,
                key=f"corpus[{i}]",
            )
        return [Source(p, root, i) for p in files]
    if path.is_dir():
        files = _walk(path)
        if not files:
            raise CorpusError(
                f"directory {path} holds no {', '.join(SUFFIXES)} files; add some or remove the entry",
                path=where,
                key=f"corpus[{i}]",
            )
        return [Source(p, path, i) for p in files]
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise CorpusError(
                f"{path} is a {path.suffix or 'suffix-less'} file; corpus files must be {', '.join(SUFFIXES)}",
                path=where,
                key=f"corpus[{i}]",
            )
        return [Source(path, None, i)]
    raise CorpusError(
        f"corpus path not found: {path}; create it or fix this entry in ensemble.yaml",
        path=where,
        key=f"corpus[{i}]",
    )


def _escapes(cfg: ProjectConfig, src: Source) -> Path | None:
    """Where a file found inside a corpus directory or glob really lives, when a symlink takes it outside
    both that directory and the project; None when it stays inside."""
    if src.root is None:  # a file named in ensemble.yaml: the user chose it, wherever it points
        return None
    real = src.path.resolve()
    for inside in (src.root.resolve(), cfg.base_dir.resolve()):
        if real.is_relative_to(inside):
            return None
    return real


def _escape_error(cfg: ProjectConfig, src: Source, real: Path) -> CorpusError:
    return CorpusError(
        f"leads through a symlink to {real}, outside the project and the corpus directory; remove the "
        f"link, or list {real} under `corpus:` in ensemble.yaml if it is meant to be read{SKIP_HINT}",
        path=_display(cfg, src.path),
        key=f"corpus[{src.entry}]",
    )


def iter_source_files(cfg: ProjectConfig, skip_bad: bool = False, warn: Warn | None = None) -> list[Source]:
    """Every corpus file once, in config order (directories recursively and sorted), with its id root.

    A symlink met inside a corpus directory or glob that leads out of both it and the project is refused
    (with `skip_bad`: skipped with a warning): sharing a project must not silently index files from
    elsewhere on the machine. A path written in ensemble.yaml itself is followed wherever it points."""
    seen: set[Path] = set()
    out: list[Source] = []
    for i, entry in enumerate(cfg.corpus):
        for src in _entry_sources(cfg, i, entry):
            real = _escapes(cfg, src)
            if real is not None:
                err = _escape_error(cfg, src, real)
                if not skip_bad:
                    raise err
                (warn or (lambda msg: warnings.warn(msg, CorpusWarning, stacklevel=3)))(_skipped(err, "file skipped"))
                continue
            key = src.path.resolve()
            if key not in seen:
                seen.add(key)
                out.append(src)
    return out


def corpus_bytes(cfg: ProjectConfig) -> int:
    """How many bytes the corpus files hold (for sizing work); files the reader will refuse count as nothing
    here, the reader reports them."""
    try:
        sources = iter_source_files(cfg, skip_bad=True, warn=lambda _: None)
    except CorpusError:
        return 0
    size = 0
    for src in sources:
        try:
            size += src.path.stat().st_size
        except OSError:
            continue
    return size


def iter_sources(cfg: ProjectConfig) -> list[Path]:
    """The corpus files named by `cfg.corpus` (files, directories, globs), each once, in a stable order."""
    return [s.path for s in iter_source_files(cfg)]


def _display(cfg: ProjectConfig, path: Path) -> str:
    try:
        return path.relative_to(cfg.base_dir).as_posix()
    except ValueError:
        return str(path)


def _skipped(e: CorpusError, what: str) -> str:
    return f"{str(e).removesuffix(SKIP_HINT)}; {what}"


def _bad_file(path: Path, line: int, why: str) -> CorpusError:
    return CorpusError(
        f"{why}; re-save the file as UTF-8 text or remove it from the corpus{SKIP_HINT}",
        path=path,
        line=line,
    )


def _has_nul(path: Path, probe: int = 8192) -> bool:
    """Text never holds NUL bytes; images, archives and office files do within their first few KB."""
    try:
        with path.open("rb") as f:
            return b"\x00" in f.read(probe)
    except OSError:
        return False


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Decoded lines (without line ends), read one bounded line at a time; a bad file raises CorpusError."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise CorpusError(f"cannot read the file ({e.strerror or e}); check its permissions", path=path) from None
    with f:
        n = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            if b"\x00" in raw:
                raise _bad_file(path, n, "binary file (NUL bytes), not UTF-8 text")
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise CorpusError(
                    f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MB; split the text into lines "
                    f"or documents{SKIP_HINT}",
                    path=path,
                    line=n,
                )
            if n == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                why = "binary file (NUL bytes), not UTF-8 text" if _has_nul(path) else "not UTF-8 text"
                raise _bad_file(path, n, f"{why} (bad byte 0x{raw[e.start]:02x})") from None
            yield n, text.rstrip("\r\n")


class _Reader:
    def __init__(self, cfg: ProjectConfig, skip_bad: bool, warn: Warn | None, clean: bool = True) -> None:
        self.cfg = cfg
        self.clean = clean
        self.skip_bad = skip_bad
        self.warn = warn or (lambda msg: warnings.warn(msg, CorpusWarning, stacklevel=4))
        self.ids: dict[str, str] = {}

    def document(self, doc_id: str, raw_text: str, raw_title: str | None, source: str) -> Document | None:
        if doc_id in self.ids:
            raise CorpusError(
                f"duplicate document id {doc_id!r}: also in {self.ids[doc_id]}; ids must be unique "
                "(rename one file or change the JSONL id)",
                path=source,
            )
        self.ids[doc_id] = source
        clean = self.cfg.clean if self.clean else CleanConfig(mode="none")
        text = clean_text(raw_text, clean)
        title = clean_text(raw_title, clean).strip() if raw_title else None
        if not text.strip():
            self.warn(f"{source}: document {doc_id!r} has no text after cleaning; skipped")
            return None
        return Document(
            id=doc_id,
            text=text,
            title=title or None,
            source=source,
            content_hash=sha256_text(f"{title or ''}\n{text}"),
        )

    def text_file(self, src: Source) -> Iterator[Document]:
        try:
            text = "\n".join(line for _, line in _iter_lines(src.path))
        except CorpusError as e:
            if not self.skip_bad:
                raise
            self.warn(_skipped(e, "file skipped"))
            return
        if src.root is not None:
            doc_id = src.path.relative_to(src.root).with_suffix("").as_posix()
        else:
            doc_id = src.path.stem
        doc = self.document(doc_id, text, None, _display(self.cfg, src.path))
        if doc is not None:
            yield doc

    def jsonl_file(self, src: Source) -> Iterator[Document]:
        shown = _display(self.cfg, src.path)
        lines = _iter_lines(src.path)
        while True:
            try:
                n, line = next(lines)
            except StopIteration:
                return
            except CorpusError as e:
                if not self.skip_bad:
                    raise
                # After a decode/binary error the rest of the file cannot be trusted either.
                self.warn(_skipped(e, "rest of the file skipped"))
                return
            if not line.strip():
                continue
            try:
                doc_id, text, title = _jsonl_record(line, src.path, n)
            except CorpusError as e:
                if not self.skip_bad:
                    raise
                self.warn(_skipped(e, "line skipped"))
                continue
            doc = self.document(doc_id, text, title, f"{shown}:{n}")
            if doc is not None:
                yield doc


def _jsonl_record(line: str, path: Path, n: int) -> tuple[str, str, str | None]:
    """(id, text, title) of one JSONL line."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(
            f"invalid JSON ({e.msg} at column {e.colno}); fix this line{SKIP_HINT}", path=path, line=n
        ) from None
    if not isinstance(rec, dict):
        raise CorpusError(f'expected a JSON object {{"id": ..., "text": ...}}{SKIP_HINT}', path=path, line=n)
    for field in ("id", "text"):
        if field not in rec:
            raise CorpusError(f'missing field "{field}"; each line needs "id" and "text"{SKIP_HINT}', path=path, line=n)
    doc_id, text, title = rec["id"], rec["text"], rec.get("title")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or not str(doc_id).strip():
        raise CorpusError(f'"id" must be a non-empty string{SKIP_HINT}', path=path, line=n)
    if not isinstance(text, str):
        raise CorpusError(f'"text" must be a string{SKIP_HINT}', path=path, line=n)
    if title is not None and not isinstance(title, str):
        raise CorpusError(f'"title" must be a string when given{SKIP_HINT}', path=path, line=n)
    return str(doc_id), text, title


def check_documents(cfg: ProjectConfig, skip_bad: bool = False) -> int:
    """Read the whole corpus as `read_documents` does but without cleaning it (a fraction of the cost): the
    first bad file, line or duplicate id raises here (with `skip_bad`: is passed over silently), before a
    caller that streams has written anything. Returns how many documents it found (before cleaning)."""
    return sum(1 for _ in read_documents(cfg, skip_bad, warn=lambda _: None, clean=False))


def read_documents(
    cfg: ProjectConfig, skip_bad: bool = False, warn: Warn | None = None, *, clean: bool = True
) -> Iterator[Document]:
    """Stream cleaned documents from every corpus file (`clean=False`: as written).

    `.jsonl`: one `{"id", "text", "title"?}` object per line. `.txt`/`.md`: one document per file, its id
    the path below the corpus directory without suffix (or the file stem for a file named directly).
    Bad files raise CorpusError; with `skip_bad` they are reported through `warn` and skipped.
    """
    reader = _Reader(cfg, skip_bad, warn, clean)
    sources = iter_source_files(cfg, skip_bad, reader.warn)
    count = 0
    for src in sources:
        docs = reader.jsonl_file(src) if src.path.suffix.lower() == ".jsonl" else reader.text_file(src)
        for doc in docs:
            count += 1
            yield doc
    if count == 0:
        if cfg.corpus:
            entries = ", ".join(cfg.corpus)
            msg = f"corpus is empty: no document with text in {entries}; add .txt, .md or .jsonl files"
        else:
            msg = "corpus is empty: no corpus entries are configured; list files or directories under `corpus:`"
        raise CorpusError(msg, path=cfg.source, key="corpus")
