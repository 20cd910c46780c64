"""Passages as content terms, the words a user would type for them, and slugs: pure functions over analyzer output.

A passage is represented by the terms the index holds for it (the project's analyzer), keeping content terms
only: for Korean the common nouns (NNG), elsewhere every term with a letter and two characters or more. Each term
remembers the surface words it came from, so a query can say `letters` rather than the stem `letter`, or
`아름다운` rather than `아름답`, as long as the word analyzes back to exactly that term.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..text.analyzers import Token

# Nori part-of-speech tags of content terms: common nouns (not dependent nouns like 것, 수; not proper nouns,
# whose clusters would be the stories their characters live in rather than what they are about).
KOREAN_CONTENT_TAGS = frozenset({"NNG"})
SLUG_MAX = 40


@dataclass(frozen=True)
class PassageTerms:
    id: str
    terms: tuple[str, ...]  # content terms in text order, repeats kept (term frequencies)


def is_content(token: Token, analyzer: str) -> bool:
    """Whether a token is worth a topic: a noun for nori, a word of two letters or more otherwise."""
    if analyzer.startswith("nori"):
        return token.type.split("+")[0] in KOREAN_CONTENT_TAGS
    return len(token.term) >= 2 and any(ch.isalpha() for ch in token.term)


def content_terms(
    pid: str, text: str, tokens: Sequence[Token], analyzer: str, surfaces: dict[str, Counter[str]]
) -> PassageTerms:
    """A passage's content terms; counts each term's surface word (the text it spans) into `surfaces`."""
    kept = []
    for tok in tokens:
        if not is_content(tok, analyzer):
            continue
        kept.append(tok.term)
        surfaces.setdefault(tok.term, Counter())[text[tok.start : tok.end].lower()] += 1
    return PassageTerms(pid, tuple(kept))


def query_word(term: str, surfaces: Counter[str], analyze: Callable[[str], list[str]]) -> str | None:
    """The most frequent surface word that analyzes to exactly `term` (the term itself as a last resort),
    or None when no word finds the term again."""
    ordered = sorted(surfaces.items(), key=lambda kv: (-kv[1], kv[0]))
    for word in [w for w, _ in ordered] + [term]:
        if word.strip() and analyze(word) == [term]:
            return word
    return None


# Revised Romanization of Korean, letter by letter (no sound changes across syllables).
_INITIALS = "g kk n d tt r m b pp s ss - j jj ch k t p h".split()
_MEDIALS = "a ae ya yae eo e yeo ye o wa wae oe yo u wo we wi yu eu ui i".split()
_FINALS = ["", *"k k k n n n t l k m l l l p l m p p t t ng t t k t p t".split()]
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".split(),
        strict=True,
    )
)


def romanize(word: str) -> str:
    """Hangul syllables and Cyrillic letters in Latin letters; other characters as they are (lower-cased)."""
    out = []
    for ch in word.lower():
        code = ord(ch) - 0xAC00
        if 0 <= code < 11172:
            ini, med, fin = code // 588, (code % 588) // 28, code % 28
            out.append(_INITIALS[ini].strip("-") + _MEDIALS[med] + _FINALS[fin])
        elif ch in _CYRILLIC:
            out.append(_CYRILLIC[ch].strip("-"))
        else:
            out.append(ch)
    return "".join(out)


def slug(words: Sequence[str]) -> str:
    """`love-letters` from ["love", "letters"]: romanized, ASCII a-z0-9 and '-', at most SLUG_MAX characters
    ('' when nothing is left)."""
    parts = []
    for w in words:
        ascii_word = unicodedata.normalize("NFKD", romanize(w)).encode("ascii", "ignore").decode()
        part = "".join(ch if ch.isalnum() else "-" for ch in ascii_word.lower()).strip("-")
        if part:
            parts.append(part)
    s = "-".join(parts)[:SLUG_MAX].strip("-")
    return s if s[:1].isalnum() else ""


def unique_slugs(candidates: Sequence[str]) -> list[str]:
    """Each candidate made unique and valid: blank ones become topic-<n>, repeats get -<n> (n from 1)."""
    out: list[str] = []
    for i, s in enumerate(candidates, 1):
        name = s or f"topic-{i}"
        if name in out:
            name = f"{name[: SLUG_MAX - 4]}-{i}"
        out.append(name)
    return out
