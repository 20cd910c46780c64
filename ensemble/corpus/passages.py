"""Documents → passages: sentence-aware windows of at most `max_chars`, preferring paragraph breaks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config.project import PassagesConfig, ProjectConfig
from ..text.sentences import split_many
from .types import Document, Passage

Splitter = Callable[[list[str]], list[list[str]]]

# Separators inside a passage mirror the document: same line, new line, new paragraph.
_SEP = (" ", "\n", "\n\n")


@dataclass(frozen=True)
class _Unit:
    text: str
    para: int
    line: int


def _lines(text: str) -> list[tuple[int, str]]:
    """(paragraph number, line) for every non-blank line; blank lines separate paragraphs."""
    out: list[tuple[int, str]] = []
    para = 0
    blank = False
    for line in text.split("\n"):
        if line.strip():
            if blank and out:
                para += 1
            out.append((para, line))
            blank = False
        else:
            blank = True
    return out


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    """A sentence longer than max_chars, cut at the last whitespace of each window (hard cut if none)."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        cut = rest.rfind(" ", 1, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _units(lines: list[tuple[int, str]], sentences: list[list[str]], max_chars: int) -> list[_Unit]:
    units: list[_Unit] = []
    for li, ((para, _), sents) in enumerate(zip(lines, sentences, strict=True)):
        for s in sents:
            units.extend(_Unit(piece, para, li) for piece in _cut_long(s, max_chars))
    return units


def _sep(a: _Unit, b: _Unit) -> str:
    return _SEP[2] if a.para != b.para else _SEP[1] if a.line != b.line else _SEP[0]


def _size(group: list[_Unit]) -> int:
    return sum(len(u.text) for u in group) + sum(len(_sep(a, b)) for a, b in zip(group, group[1:], strict=False))


def _join(group: list[_Unit]) -> str:
    parts = [group[0].text]
    for a, b in zip(group, group[1:], strict=False):
        parts += [_sep(a, b), b.text]
    return "".join(parts)


def _pack(units: list[_Unit], max_chars: int, min_chars: int) -> list[list[_Unit]]:
    para_size: dict[int, int] = {}
    for prev, u in zip([None, *units], units, strict=False):
        sep = len(_sep(prev, u)) if prev is not None and prev.para == u.para else 0
        para_size[u.para] = para_size.get(u.para, 0) + sep + len(u.text)
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for u in units:
        if current:
            added = len(_sep(current[-1], u)) + len(u.text)
            new_para = u.para != current[-1].para
            # At a paragraph break, close a half-full passage rather than split the next paragraph.
            if size + added > max_chars or (
                new_para and size >= max_chars // 2 and size + 2 + para_size[u.para] > max_chars
            ):
                groups.append(current)
                current, size = [], 0
        size += (len(_sep(current[-1], u)) if current else 0) + len(u.text)
        current.append(u)
    if current:
        groups.append(current)
    return _merge_tail(groups, max_chars, min_chars)


def _merge_tail(groups: list[list[_Unit]], max_chars: int, min_chars: int) -> list[list[_Unit]]:
    """A tiny last passage joins the previous one, or borrows its last sentences when both won't fit."""
    if len(groups) < 2 or _size(groups[-1]) >= min_chars:
        return groups
    prev, tail = groups[-2], groups[-1]
    if _size(prev + tail) <= max_chars:
        return [*groups[:-2], prev + tail]
    while len(prev) > 1 and _size(tail) < min_chars and _size(prev[-1:] + tail) <= max_chars:
        prev, tail = prev[:-1], prev[-1:] + tail
    return [*groups[:-2], prev, tail]


def _passages(doc: Document, groups: list[list[_Unit]]) -> list[Passage]:
    return [Passage(id=f"{doc.id}#{n}", doc_id=doc.id, n=n, text=_join(g)) for n, g in enumerate(groups)]


def split_passages(doc: Document, cfg: PassagesConfig, splitter: Splitter = split_many) -> list[Passage]:
    """Passages of one document, ids `<doc id>#0`, `#1`, …; a sentence is cut only if it alone is too long."""
    return split_passages_many([doc], cfg, splitter)[0]


def passage_texts(cfg: ProjectConfig) -> list[str]:
    """The text of every passage of the project's corpus, cut as build-index cuts it."""
    from .load import read_documents

    return [p.text for ps in split_passages_many(list(read_documents(cfg)), cfg.passages) for p in ps]


def split_passages_many(
    docs: Sequence[Document], cfg: PassagesConfig, splitter: Splitter = split_many
) -> list[list[Passage]]:
    """Passages of each document (one list per document), with one batched sentence-splitter call."""
    per_doc = [_lines(d.text) for d in docs]
    flat = [line for lines in per_doc for _, line in lines]
    sentences = splitter(flat) if flat else []
    out: list[list[Passage]] = []
    i = 0
    for doc, lines in zip(docs, per_doc, strict=True):
        units = _units(lines, sentences[i : i + len(lines)], cfg.max_chars)
        i += len(lines)
        out.append(_passages(doc, _pack(units, cfg.max_chars, cfg.min_chars)) if units else [])
    return out
