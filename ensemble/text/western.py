"""Elasticsearch's `standard`, `english` and `russian` analyzers (Lucene's StandardAnalyzer, EnglishAnalyzer,
RussianAnalyzer) in Python.

Tokenizing uses Unicode word boundaries (UAX #29, the `regex` module's word mode) as Lucene's
StandardTokenizer does; English stems with NLTK's Porter in MARTIN_EXTENSIONS mode (it matches Lucene's
PorterStemmer), Russian with Snowball (PyStemmer), which folds ё to е as Lucene 9 (Elasticsearch 8) does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

MAX_TOKEN_LENGTH = 255  # Elasticsearch's default max_token_length; longer words are cut into pieces

# Lucene's EnglishAnalyzer stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET).
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)

# Snowball's Russian stop list, the default of Lucene's RussianAnalyzer.
RUSSIAN_STOP_WORDS: frozenset[str] = frozenset(
    """и в во не что он на я с со как а то все она так
    его но да ты к у же вы за бы по только ее мне
    было вот от меня еще нет о из ему теперь когда
    даже ну вдруг ли если уже или ни быть был него
    до вас нибудь опять уж вам сказал ведь там потом
    себя ничего ей может они тут где есть надо ней
    для мы тебя их чем была сам чтоб без будто
    человек чего раз тоже себе под жизнь будет ж
    тогда кто этот говорил того потому этого какой
    совсем ним здесь этом один почти мой тем чтобы
    нее кажется сейчас были куда зачем сказать всех
    никогда сегодня можно при наконец два об другой
    хоть после над больше тот через эти нас про
    всего них какая много разве сказала три эту моя
    впрочем хорошо свою этой перед иногда лучше чуть
    том нельзя такой им более всегда конечно всю
    между""".split()
)

_APOSTROPHES = ("'", "\u2019", "\uff07")


@lru_cache(maxsize=1)
def _patterns():
    import regex

    boundary = regex.compile(r"(?wV1)\b")
    # what makes a segment a token for Lucene: letters, numbers in the UAX #29 sense, CJK, emoji
    word = regex.compile(
        r"[\p{WB=ALetter}\p{WB=Numeric}\p{WB=Katakana}\p{WB=Hebrew_Letter}\p{Ideographic}\p{Script=Hiragana}"
        r"\p{Script=Hangul}\p{Line_Break=Complex_Context}\p{Extended_Pictographic}\p{Regional_Indicator}]"
    )
    # the `regex` module leaves a leading apostrophe or format char on a word ('quoted' -> 'quoted); UAX #29
    # and Lucene do not
    leading = regex.compile(
        r"^[\p{WB=Single_Quote}\p{WB=MidLetter}\p{WB=MidNumLet}\p{WB=MidNum}\p{WB=Format}\p{WB=Extend}]+"
    )
    # Lucene keeps a run of Southeast Asian script (Thai, Lao, ...) as one token; UAX #29 splits every char
    southeast_asian = regex.compile(r"^[\p{Line_Break=Complex_Context}\p{Mn}]+$")
    kinds = [
        ("<EMOJI>", regex.compile(r"^(?:\p{Extended_Pictographic}|\p{Regional_Indicator})")),
        ("<HANGUL>", regex.compile(r"^\p{Script=Hangul}+$")),
        ("<IDEOGRAPHIC>", regex.compile(r"^\p{Script=Han}")),
        ("<HIRAGANA>", regex.compile(r"^\p{Script=Hiragana}")),
        ("<KATAKANA>", regex.compile(r"^\p{Script=Katakana}")),
        (
            "<SOUTHEAST_ASIAN>",
            regex.compile(r"^[\p{Script=Thai}\p{Script=Lao}\p{Script=Myanmar}\p{Script=Khmer}]"),
        ),
        ("<NUM>", regex.compile(r"^[\p{N}.,]+$")),
    ]
    return boundary, word, leading, southeast_asian, kinds


def standard_tokens(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) by Unicode word boundaries, keeping segments with a letter, digit or emoji; words
    longer than MAX_TOKEN_LENGTH are cut like Lucene does."""
    boundary, word, leading, southeast_asian, _ = _patterns()
    out: list[tuple[str, int, int]] = []
    start = 0
    for piece in _join_runs(boundary.split(text), southeast_asian):
        end = start + len(piece)
        if piece and word.search(piece):
            lead = leading.match(piece)
            first = start + (lead.end() if lead else 0)
            for s in range(first, end, MAX_TOKEN_LENGTH):
                out.append((text[s : min(s + MAX_TOKEN_LENGTH, end)], s, min(s + MAX_TOKEN_LENGTH, end)))
        start = end
    return out


def _join_runs(pieces: list[str], pattern) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and piece and out[-1] and pattern.match(piece) and pattern.match(out[-1]):
            out[-1] += piece
        else:
            out.append(piece)
    return out


def token_type(term: str) -> str:
    for name, pattern in _patterns()[4]:
        if pattern.search(term):
            return name
    return "<ALPHANUM>"


def strip_possessive(term: str) -> str:
    """Lucene's EnglishPossessiveFilter: John's -> John."""
    if len(term) >= 2 and term[-1] in "sS" and term[-2] in _APOSTROPHES:
        return term[:-2]
    return term


class WesternAnalyzer:
    """Standard tokenizer + lowercase, then optional possessive stripping, stop words and a stemmer."""

    def __init__(
        self,
        *,
        possessive: bool = False,
        stop_words: frozenset[str] = frozenset(),
        stem: Callable[[str], str] | None = None,
    ) -> None:
        self.possessive = possessive
        self.stop_words = stop_words
        self._stem = stem
        self._stems: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        return [t for t, _, _ in self._terms(text) if t is not None]

    def analyze_many(self, texts: Sequence[str]) -> list[list[str]]:
        return [self(t) for t in texts]

    def _terms(self, text: str) -> list[tuple[str | None, int, int]]:
        """(term or None where a stop word was removed, start, end)."""
        out: list[tuple[str | None, int, int]] = []
        for word, start, end in standard_tokens(text):
            term = (strip_possessive(word) if self.possessive else word).lower()
            if term in self.stop_words:
                out.append((None, start, end))
                continue
            if self._stem is not None:
                stemmed = self._stems.get(term)
                if stemmed is None:
                    stemmed = self._stem(term)
                    if len(self._stems) > 200_000:
                        self._stems.clear()
                    self._stems[term] = stemmed
                term = stemmed
            out.append((term, start, end))
        return out

    def tokens(self, text: str) -> list[tuple[str, int, int, int, str]]:
        out = []
        position = -1
        for term, start, end in self._terms(text):
            position += 1
            if term is not None:
                out.append((term, start, end, position, token_type(text[start:end])))
        return out


def _porter() -> Callable[[str], str]:
    from nltk.stem.porter import PorterStemmer

    stemmer = PorterStemmer(mode=PorterStemmer.MARTIN_EXTENSIONS)

    def stem(word: str) -> str:
        # Lucene's PorterStemmer leaves words of two letters or fewer alone
        return word if len(word) <= 2 else stemmer.stem(word, to_lowercase=False)

    return stem


def _snowball_russian() -> Callable[[str], str]:
    import Stemmer

    return Stemmer.Stemmer("russian").stemWord


def build(name: str) -> WesternAnalyzer:
    if name == "standard":
        return WesternAnalyzer()
    if name == "english":
        return WesternAnalyzer(possessive=True, stop_words=ENGLISH_STOP_WORDS, stem=_porter())
    if name == "russian":
        return WesternAnalyzer(stop_words=RUSSIAN_STOP_WORDS, stem=_snowball_russian())
    raise ValueError(f"not a western analyzer: {name}")
