"""Elasticsearch-compatible analyzers: the terms BM25 indexes and queries are made of.

Names follow Elasticsearch: `nori` (Korean, Nori with its default part-of-speech stop tags), `nori_adv`
(the same keeping adverbs MAG/MAJ, for queries like "희망과 함께"), `standard`, `english`, `russian`.
The mecab dictionary and the stemmers load on first use; each analyzer is built once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple, Protocol

from ensemble.core.errors import ConfigError

ANALYZERS: tuple[str, ...] = ("nori", "nori_adv", "standard", "english", "russian")
_ADVERB_VARIANTS = {"nori": "nori_adv"}


class Token(NamedTuple):
    """One term with its place in the text: start/end are str indices (code points; Elasticsearch counts
    UTF-16 units), position counts as Lucene does (removed stop words leave gaps), type is the part-of-speech
    tag for Korean and Lucene's token type (<ALPHANUM>, <NUM>, <HANGUL>, ...) otherwise."""

    term: str
    start: int
    end: int
    position: int
    type: str


class Analyzer(Protocol):
    def __call__(self, text: str) -> list[str]: ...

    def analyze_many(self, texts: Sequence[str]) -> list[list[str]]: ...

    def tokens(self, text: str) -> list[tuple[str, int, int, int, str]]: ...


def check_name(name: str, *, key: str = "analyzer") -> str:
    """`name` if it names an analyzer, else a ConfigError listing the allowed ones."""
    if name not in ANALYZERS:
        allowed = ", ".join(ANALYZERS)
        raise ConfigError(f"unknown analyzer {name!r}; use one of: {allowed}", key=key)
    return name


@cache
def _build(name: str) -> Analyzer:
    if name in ("nori", "nori_adv"):
        from ensemble.text.nori import ADVERB_TAGS, DEFAULT_STOP_TAGS, NoriAnalyzer

        stop = DEFAULT_STOP_TAGS - ADVERB_TAGS if name == "nori_adv" else DEFAULT_STOP_TAGS
        return NoriAnalyzer(stop)
    from ensemble.text import western

    return western.build(name)


@cache
def _build_with_adv(name: str):
    from ensemble.text.nori import ADVERB_TAGS, DEFAULT_STOP_TAGS, NoriAnalyzer

    return NoriAnalyzer(DEFAULT_STOP_TAGS, DEFAULT_STOP_TAGS - ADVERB_TAGS)


def index_fields(texts: Sequence[str], name: str) -> list[tuple[str, str]]:
    """What the two indexed fields hold for each text: (terms, adverb-keeping terms), each space-separated.
    For nori both come from one mecab parse; other analyzers keep adverbs anyway, so both are the same."""
    if adv_analyzer_name(name) == name:
        return [(joined, joined) for joined in map(" ".join, analyze_many(texts, name))]
    fields = _build_with_adv(name).fields
    return [fields(t) for t in texts]  # type: ignore[misc]  # two stop sets, so two fields


def get_analyzer(name: str) -> Callable[[str], list[str]]:
    """The analyzer called `name`, a callable `text -> terms`, built once per process."""
    return _build(check_name(name))


def analyze(text: str, name: str) -> list[str]:
    return _build(check_name(name))(text)


def analyze_many(texts: Sequence[str], name: str) -> list[list[str]]:
    """Terms of many texts at once (the indexing loop): one lookup, no per-text dispatch."""
    return _build(check_name(name)).analyze_many(texts)


def analyze_tokens(text: str, name: str) -> list[Token]:
    """Terms with offsets, positions and types, like Elasticsearch's `_analyze`."""
    return [Token(*t) for t in _build(check_name(name)).tokens(text)]


def speed_note(name: str) -> str | None:
    """A line for the user where analyzer `name` runs on its slow path, else None."""
    if getattr(_build(check_name(name)), "compiled", True):
        return None
    return (
        f"the {name} analyzer runs on python-mecab-ko, 3-4x slower than usual: its compiled module "
        "ensemble.text._mecab_path was not built (reinstall with a C compiler present: pip install -e .)"
    )


def adv_analyzer_name(name: str) -> str:
    """The analyzer to use for queries that should keep adverbs (nori -> nori_adv; others unchanged)."""
    return _ADVERB_VARIANTS.get(check_name(name), name)
