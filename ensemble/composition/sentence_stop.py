"""Where a candidate may stop early: the ids that end a sentence and the ids that begin the next one.

A chaining step keeps only a candidate's complete sentences; what it writes after its last sentence end is
thrown away. A row told to stop (`Sampling.stop_after`) does so once it stands just past a sentence end: the id
it chose starts with whitespace after an id that ends with final punctuation (closing quotes may follow), or
that id holds both. The one id of the next sentence it wrote is dropped with the unfinished tail, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chain import is_complete


@dataclass(frozen=True)
class SentenceMarks:
    closes: frozenset[int]  # its text ends a sentence
    closes_spaced: frozenset[int]  # …and whitespace follows within the same id
    opens: frozenset[int]  # its text starts with whitespace, after any other id

    def past_sentence_end(self, ids: Sequence[int]) -> bool:
        """Does a text ending with `ids` stand just past a sentence end?"""
        last = ids[-1]
        return last in self.closes_spaced or (len(ids) >= 2 and last in self.opens and ids[-2] in self.closes)


def sentence_marks(tokenizer: Any, texts: Sequence[str]) -> SentenceMarks:
    """The marks of every id, given each id's own text (`texts[i]`, decoded alone). Where no id decoded alone
    starts with a space (a SentencePiece tokenizer that drops the leading space of a lone id), whether an id
    starts with whitespace is read from it decoded after a letter instead."""
    closes = {i for i, t in enumerate(texts) if t.strip() and is_complete(t)}
    spaced = {i for i in closes if texts[i] != texts[i].rstrip()}
    opens = {i for i, t in enumerate(texts) if t[:1].isspace()}
    letter = next((i for i, t in enumerate(texts) if len(t) == 1 and t.isalpha()), None)
    if letter is not None and not any(texts[i][:1] == " " for i in opens):
        pairs = tokenizer.batch_decode([[letter, i] for i in range(len(texts))])
        opens = {i for i, t in enumerate(pairs) if t[1:2].isspace()}
    return SentenceMarks(frozenset(closes), frozenset(spaced), frozenset(opens))
