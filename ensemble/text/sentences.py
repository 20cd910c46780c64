"""Sentence splitting: kss's compiled splitter when installed, a rule-based splitter otherwise.

Both backends only choose *cut points* in each newline-separated chunk; the sentences are slices of
the chunk between cuts, so no text is ever lost or rewritten (only surrounding whitespace is dropped).
The same repairs (keep short quotations whole, attach closing quotes, split Latin sentences) run
after either backend.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal

import regex as re

Backend = Literal["auto", "kss", "rules"]

# A quotation this short stays one sentence even when it holds several ("가자. 어서." 하고 말했다).
QUOTE_SPAN_MAX = 200

_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "〈": "〉", "«": "»", "(": ")", "[": "]"}
_CLOSERS = set(_PAIRS.values()) | {'"', "'"}
_QUOTES_FOR_SPAN = {"“", "‘", "「", "『", "《", "〈", "«", '"', "'"}
_QUOTE_CHARS = re.compile("[" + re.escape("".join(sorted(set(_PAIRS) | _CLOSERS))) + "]")

# Words that continue a sentence after a closing quote: "네." 하고 / 라고 / 하며 대답했다.
_QUOTATIVE = re.compile(
    r"(?:이라고|라고|하고|하며|하면서|라며|이라며|라면서|하자|하니|하는|라는|이라는|하더니|하였다|했다|한다)(?=\s|$|[.,!?…])"
)

_LATIN_ABBREV = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e no fig vol pp cf al inc ltd co mt approx dept".split()
)

# Sentence-final punctuation followed by closing quotes/brackets, then whitespace.
_PUNCT_END = re.compile(r"[.!?…。！？‼⁇⁈⁉]+[\"'”’」』》〉»)\]]*(?=\s|$)")
# Korean sentence-final endings written without punctuation, followed by whitespace.
_KO_END = re.compile(r"(?<=\p{Hangul})(?:다|요|죠|까)(?=\s)")
_LATIN_END = re.compile(r"(?<=[\p{Latin}\d][.!?]+)[\"')\]]*\s+(?=[\"'(\[]?\p{Lu})")

_HANGUL_BASE = 0xAC00
_JONG_N, _JONG_B, _JONG_SS = 4, 17, 20
_DA_PREV = set("이없같싶좋않많렇르")
_YO_PREV = set("어아에예세네지게래해데워와봐줘돼까거걸군구나서려니죠라")


def _jong(ch: str) -> int:
    o = ord(ch) - _HANGUL_BASE
    return o % 28 if 0 <= o < 11172 else -1


def _korean_ending_ok(chunk: str, start: int) -> bool:
    """Is the word ending at chunk[start] (다/요/죠/까) a sentence-final ending, not part of a noun?"""
    end = chunk[start]
    prev = chunk[start - 1]
    if end == "죠":
        return True
    if end == "요":
        return prev in _YO_PREV
    before = chunk[start - 2] if start >= 2 else " "
    if end == "다":
        if prev == "니":  # 습니다 / 합니다 / 입니다
            return before == "습" or _jong(before) == _JONG_B
        return _jong(prev) in (_JONG_SS, _JONG_N) or prev in _DA_PREV
    # 까: only 습니까 / 합니까; 할까 without a '?' is usually embedded (뭐 할까 고민했다).
    return prev == "니" and (before == "습" or _jong(before) == _JONG_B)


def _rule_cuts(chunk: str) -> list[int]:
    cuts = [m.end() for m in _PUNCT_END.finditer(chunk) if not _latin_abbrev_before(chunk, m.start())]
    cuts += [m.end() for m in _KO_END.finditer(chunk) if _korean_ending_ok(chunk, m.start())]
    return cuts


def _latin_abbrev_before(chunk: str, dot: int) -> bool:
    """Does the '.' at `dot` end an abbreviation, an initial or a number (Dr. / J. / e.g. / 1.)?"""
    if chunk[dot] != "." or (dot + 1 < len(chunk) and chunk[dot + 1] == "."):
        return False
    start = dot
    while start > 0 and not chunk[start - 1].isspace():
        start -= 1
    word = chunk[start:dot]
    if word.lower() in _LATIN_ABBREV:
        return True
    if len(word) == 1 and word.isalpha() and word.isascii() and word.isupper():
        return True
    return word.isdigit()  # "1. 서론": a list number, not a sentence


def _latin_cuts(chunk: str) -> list[int]:
    return [m.start() for m in _LATIN_END.finditer(chunk) if not _latin_abbrev_before(chunk, _dot_before(chunk, m))]


def _dot_before(chunk: str, m: re.Match[str]) -> int:
    i = m.start() - 1
    while i > 0 and chunk[i] not in ".!?":
        i -= 1
    return i


def _quote_scan(chunk: str) -> tuple[list[tuple[int, int]], set[int]]:
    """Matched quotation spans (open, close) and the indices of every closing quote/bracket that matched."""
    spans: list[tuple[int, int]] = []
    closing: set[int] = set()
    stack: list[tuple[str, int]] = []
    straight: dict[str, int] = {}
    for m in _QUOTE_CHARS.finditer(chunk):
        i, ch = m.start(), m.group()
        if ch in _PAIRS:
            stack.append((ch, i))
        elif ch in ('"', "'"):
            if ch == "'" and 0 < i < len(chunk) - 1 and chunk[i - 1].isalpha() and chunk[i + 1].isalpha():
                if chunk[i - 1].isascii() and chunk[i + 1].isascii():
                    continue  # an apostrophe: don't, it's
            if ch in straight:
                spans.append((straight.pop(ch), i))
                closing.add(i)
            else:
                straight[ch] = i
        elif ch in _CLOSERS:
            for k in range(len(stack) - 1, -1, -1):
                if _PAIRS[stack[k][0]] == ch:
                    spans.append((stack[k][1], i))
                    closing.add(i)
                    del stack[k:]
                    break
    quote_spans = [(a, b) for a, b in spans if chunk[a] in _QUOTES_FOR_SPAN]
    return quote_spans, closing


class _Inside:
    """Is a cut strictly inside one of the spans (after the opening quote, up to the closing one)?"""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for a, b in sorted(spans):
            if merged and a < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [a for a, _ in merged]
        self.ends = [b for _, b in merged]

    def __call__(self, cut: int) -> bool:
        k = bisect.bisect_left(self.starts, cut) - 1
        return k >= 0 and cut <= self.ends[k]


def _repair(chunk: str, cuts: Iterable[int]) -> list[int]:
    """Canonicalise cut points (each at the first non-space char of the next sentence) and fix quotes."""
    n = len(chunk)
    spans, closing = _quote_scan(chunk)
    inside = _Inside([(a, b) for a, b in spans if b - a <= QUOTE_SPAN_MAX])
    out: set[int] = set()
    for c in cuts:
        while c < n and chunk[c].isspace():
            c += 1
        # A cut before a closing quote belongs after it: [“가자.] [” 그가 말했다] → [“가자.”] [그가 말했다]
        moved = False
        while c < n and c in closing:
            c += 1
            moved = True
        if moved:
            if c < n and not chunk[c].isspace() and chunk[c] not in _CLOSERS:
                continue  # "네."라고 — the quote is glued to the next word: same sentence
            while c < n and chunk[c].isspace():
                c += 1
        if c <= 0 or c >= n:
            continue
        if inside(c):
            continue
        left_end = c - 1
        while left_end > 0 and chunk[left_end].isspace():
            left_end -= 1
        if left_end in closing and _QUOTATIVE.match(chunk, c):
            continue  # "가자." 하고 말했다 — the quotation is part of this sentence
        out.add(c)
    return sorted(out)


def _slice(chunk: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(chunk)]
    pieces = (chunk[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False))
    return [p for p in pieces if p]


def _chunks(text: str) -> list[str]:
    return [c for c in (line.strip() for line in text.splitlines()) if c]


def _kss_cuts(chunk: str, pieces: list[str]) -> list[int] | None:
    """Where kss's pieces begin in `chunk`; None when they are not in-order slices of it."""
    cuts: list[int] = []
    pos = 0
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        at = chunk.find(piece, pos)
        if at < 0 or chunk[pos:at].strip():
            return None
        if at > 0:
            cuts.append(at)
        pos = at + len(piece)
    return cuts if not chunk[pos:].strip() else None


@functools.cache
def _load_kss() -> Callable[..., Any] | None:
    """kss's `split_sentences`, or None when kss is not installed.

    `import kss` runs the package's __init__, which loads every kss module (one parses a spreadsheet) and
    takes 6-10 s; the sentence splitter alone loads in well under a second. So the splitter module is
    imported below an uninitialised package object, which is dropped again afterwards: a later `import kss`
    elsewhere still gets the complete package."""
    try:
        spec = importlib.util.find_spec("kss")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    loaded = sys.modules.get("kss")
    if loaded is not None and hasattr(loaded, "split_sentences"):
        return loaded.split_sentences
    placeholder = importlib.util.module_from_spec(spec)
    sys.modules["kss"] = placeholder
    try:
        from kss._modules.sentences.split_sentences import split_sentences
    except Exception:  # another kss layout: pay for the full import
        split_sentences = None
    finally:
        if sys.modules.get("kss") is placeholder:
            del sys.modules["kss"]
    if split_sentences is None:
        try:
            import kss
        except ImportError:
            return None
        split_sentences = kss.split_sentences
    return split_sentences


def kss_available() -> bool:
    return _load_kss() is not None


def _kss_split(chunks: list[str]) -> list[list[str]]:
    split_sentences = _load_kss()
    assert split_sentences is not None
    if not chunks:
        return []
    # 'fast' is kss's compiled character-table splitter (kss_cython): ~500x faster than the
    # mecab-backed analyser that backend="auto" would pick, and good enough once quotes are repaired.
    out = split_sentences(chunks, backend="fast", num_workers=1)
    # kss unwraps a one-element list into that element's sentences.
    return [out] if len(chunks) == 1 else out


def _resolve_backend(backend: str) -> str:
    if backend == "rules":
        return "rules"
    if backend == "kss":
        if not kss_available():
            raise ImportError("sentence backend 'kss' requested but kss is not installed: pip install kss")
        return "kss"
    if backend == "auto":
        return "kss" if kss_available() else "rules"
    raise ValueError(f"unknown sentence backend {backend!r}; use 'auto', 'kss' or 'rules'")


def split_many(texts: list[str], backend: Backend = "auto") -> list[list[str]]:
    """Split each text into sentences, with one batched kss call for all of their lines."""
    which = _resolve_backend(backend)
    per_text = [_chunks(t) for t in texts]
    flat = [c for chunks in per_text for c in chunks]
    if which == "kss":
        raw = _kss_split(flat)
        cut_lists = []
        for chunk, pieces in zip(flat, raw, strict=True):
            cuts = _kss_cuts(chunk, pieces)
            cut_lists.append(cuts if cuts is not None else _rule_cuts(chunk))
    else:
        cut_lists = [_rule_cuts(c) for c in flat]
    sentences = [
        _slice(chunk, _repair(chunk, [*cuts, *_latin_cuts(chunk)])) for chunk, cuts in zip(flat, cut_lists, strict=True)
    ]
    out: list[list[str]] = []
    i = 0
    for chunks in per_text:
        out.append([s for sents in sentences[i : i + len(chunks)] for s in sents])
        i += len(chunks)
    return out


def split_sentences(text: str, backend: Backend = "auto") -> list[str]:
    """Sentences of `text`, in order, stripped; lines are never joined into one sentence."""
    return split_many([text], backend=backend)[0]
