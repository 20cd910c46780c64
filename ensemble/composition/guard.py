"""Guards each generated sentence must pass: it repeats nothing already written and copies no passage."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Literal

import regex as re

_NON_WORD = re.compile(r"[^\p{L}\p{N}]+")
_SPACE = re.compile(r"\s+")


def normalize(sentence: str) -> str:
    """NFC, one space between words, no surrounding space: the form every comparison uses."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", sentence)).strip()


def _words(text: str) -> list[str]:
    """Words without their punctuation (했다. == 했다), so punctuation alone never hides a copy."""
    return [w for w in (_NON_WORD.sub("", t) for t in normalize(text).split(" ")) if w]


def _chars(text: str) -> str:
    return "".join(_words(text))


def ngrams(text: str, n: int, unit: Literal["word", "char"] = "char") -> list[tuple[str, ...] | str]:
    """Overlapping n-grams of words or characters (punctuation, spaces ignored); none if text is shorter."""
    if unit == "word":
        w = _words(text)
        return [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    c = _chars(text)
    return [c[i : i + n] for i in range(len(c) - n + 1)]


class RepeatGuard:
    """Rejects a sentence equal to one already written, or sharing most of its character n-grams with one."""

    def __init__(self, written: Iterable[str] = (), *, n: int = 3, overlap: float = 0.8) -> None:
        self.n = n
        self.overlap = overlap
        self._exact: set[str] = set()
        self._grams: list[set[str]] = []
        for s in written:
            self.add(s)

    def _key(self, sentence: str) -> str:
        return _chars(sentence) or normalize(sentence)

    def add(self, sentence: str) -> None:
        self._exact.add(self._key(sentence))
        grams = set(ngrams(sentence, self.n))
        if grams:
            self._grams.append(grams)  # type: ignore[arg-type]

    def rejects(self, sentence: str) -> bool:
        if self._key(sentence) in self._exact:
            return True
        grams = set(ngrams(sentence, self.n))
        if not grams:
            return False
        need = self.overlap * len(grams)
        return any(len(grams & seen) >= need for seen in self._grams)


class SharedRepeats:
    """Every sentence written in any section, judged with each section's own repeat settings: a sentence added
    through one section's view counts as written for all of them."""

    def __init__(self, written: Iterable[str] = ()) -> None:
        self._written = list(written)
        self._guards: dict[tuple[int, float], RepeatGuard] = {}

    def add(self, sentence: str) -> None:
        self._written.append(sentence)
        for guard in self._guards.values():
            guard.add(sentence)

    def view(self, *, n: int, overlap: float) -> SectionRepeats:
        if (n, overlap) not in self._guards:
            self._guards[n, overlap] = RepeatGuard(self._written, n=n, overlap=overlap)
        return SectionRepeats(self, self._guards[n, overlap])


class SectionRepeats:
    """One section's repeat guard over the sentences of every section."""

    def __init__(self, shared: SharedRepeats, guard: RepeatGuard) -> None:
        self._shared = shared
        self._guard = guard

    def add(self, sentence: str) -> None:
        self._shared.add(sentence)

    def rejects(self, sentence: str) -> bool:
        return self._guard.rejects(sentence)


class CopyGuard:
    """Rejects a sentence whose n-grams appear in the expert's training passages beyond `threshold`.

    Sentences shorter than n units hold no n-gram and pass: they are too short to be evidence of copying."""

    def __init__(
        self,
        passages: Iterable[str],
        *,
        n: int = 8,
        unit: Literal["word", "char"] = "word",
        threshold: float = 0.0,
    ) -> None:
        self.n = n
        self.unit = unit
        self.threshold = threshold
        self._seen: set[int] = set()
        for p in passages:
            # Hashes, not tuples: the passages of a large expert would otherwise hold every n-gram twice.
            self._seen.update(hash(g) for g in ngrams(p, n, unit))

    def __len__(self) -> int:
        return len(self._seen)

    def shared(self, sentence: str) -> float:
        """The fraction of the sentence's n-grams found in the passages."""
        grams = ngrams(sentence, self.n, self.unit)
        if not grams:
            return 0.0
        return sum(hash(g) in self._seen for g in grams) / len(grams)

    def rejects(self, sentence: str) -> bool:
        return bool(self._seen) and self.shared(sentence) > self.threshold


class NoCopyGuard:
    """The guard of the base model, which has no training passages of its own."""

    def rejects(self, sentence: str) -> bool:
        return False
