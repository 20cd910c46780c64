"""Sentence chaining, all sections together: pure control flow over a `generate` callable and a splitter.

Each round, every unfinished section asks for `candidates` continuations of its prompt (the last
`context_sentences` sentences written), all in one `generate` call. A continuation keeps only its complete
sentences; the best candidate whose sentences all pass the guards is appended, judged by the mean log-likelihood
of the tokens it keeps (up to the end of its last complete sentence; the dropped unfinished tail does not count),
plus `topic_weight` times its topic margin where the section has one (how much more its sentences read like
its own expert's passages than like another expert's).
A sentence already written in any section, prompts included, is a repeat.
A round with no passing candidate is a retry; after `max_retries` of them the section moves on with the
sentences of the best candidate that did pass, and counts it. A section ends at the first sentence boundary
past `target_chars`, or at its step cap.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import regex as re

from .config import GenerationParams
from .guard import NoCopyGuard, RepeatGuard, SharedRepeats
from .render import body_text, paragraph_text
from .types import GenerateFn, Generation, Request, Sampling, SplitFn

# A sentence is complete when it ends with final punctuation (closing quotes/brackets may follow).
_FINAL = re.compile(r"[.!?…。！？‼⁇⁈⁉]+[\"'”’」』》〉»)\]]*$")
# …or, when the model itself ended the text, with a Korean sentence-final ending.
_FINAL_KO = re.compile(r"(?:다|요|죠|까)[\"'”’」』]*$")
# Punctuation a sentence cannot start with (a model's stray "..." or ". ." before the words).
_LEADING_JUNK = re.compile(r"^[\s.,;:!?…·。、，！？~\-]+")
_LETTER = re.compile(r"[\p{L}\p{N}]")
# What the text normalisation before splitting may drop or change: whitespace and invisible format characters.
_UNCOUNTED = re.compile(r"[\s\p{Cf}]")
# Zero-width and other invisible format characters (U+200B-U+200D, U+2060, U+FEFF, bidi marks) a model may
# emit: invisible in the document, they would still keep equal words apart for the guards and the splitter.
_INVISIBLE = re.compile(r"\p{Cf}+")
# An HTML tag (web text in a base's pretraining shows through: "<b>", "</h3>"): markdown would render it.
_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
MIN_LETTERS = 2

REJECT_REASONS = ("repeat", "copy", "markup", "incomplete")


TopicMargin = Callable[[str], float]


class Guard(Protocol):
    def rejects(self, sentence: str) -> bool: ...


class Repeats(Guard, Protocol):
    def add(self, sentence: str) -> None: ...


@dataclass(frozen=True)
class ChainSection:
    index: int  # position in the outline; part of every row's seed
    heading: str
    expert: str
    prompt: str
    params: GenerationParams
    prompt_prefix: str = ""  # e.g. the condition tokens of an expert trained with them


@dataclass
class SectionState:
    """Everything needed to continue a section later: the cache stores exactly this."""

    paragraphs: list[list[str]] = field(default_factory=list)
    pending: str = ""  # an unfinished opening sentence of the user's prompt
    step: int = 0
    retries: int = 0
    tokens: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    retry_rounds: int = 0
    moved_on: int = 0
    done: bool = False
    capped: bool = False
    seconds: float = 0.0

    @property
    def sentences(self) -> list[str]:
        return [s for p in self.paragraphs for s in p]

    @property
    def chars(self) -> int:
        return len(body_text(self.paragraphs))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SectionState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        state = cls(**known)
        state.rejected = {**dict.fromkeys(REJECT_REASONS, 0), **state.rejected}
        return state


def row_seed(seed: int, section: int, step: int, candidate: int) -> int:
    """A row's random stream depends on nothing but these, so batching and resuming never change a text."""
    digest = hashlib.sha256(f"{seed}:{section}:{step}:{candidate}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def is_complete(sentence: str, *, model_ended: bool = False) -> bool:
    s = sentence.rstrip()
    return bool(_FINAL.search(s)) or (model_ended and bool(_FINAL_KO.search(s)))


def complete_sentences(pieces: Sequence[str], *, model_ended: bool) -> list[str]:
    """The splitter cut after every piece but the last; the last counts only if it ends like a sentence.

    Stray punctuation before a sentence is dropped, and so is a piece with fewer than MIN_LETTERS letters.
    A sentence holding U+FFFD (the model emitted bytes that are not UTF-8) ends the usable text."""
    return [s for s, _ in complete_with_ends(pieces, model_ended=model_ended)]


def complete_with_ends(pieces: Sequence[str], *, model_ended: bool) -> list[tuple[str, int]]:
    """`complete_sentences`, each with where it ends: the count of `counted` characters up to its end."""
    pieces = [p.strip() for p in pieces if p.strip()]
    if pieces and not is_complete(pieces[-1], model_ended=model_ended):
        pieces = pieces[:-1]
    broken = next((k for k, p in enumerate(pieces) if "\ufffd" in p), None)
    if broken is not None:
        pieces = pieces[:broken]
    out, end = [], 0
    for p in pieces:
        end += counted(p)
        s = _LEADING_JUNK.sub("", p)
        if len(_LETTER.findall(s)) >= MIN_LETTERS:
            out.append((s, end))
    return out


def counted(text: str) -> int:
    """Characters of `text` that survive the normalisation before splitting (neither space nor invisible)."""
    return len(text) - len(_UNCOUNTED.findall(text))


def _index_after(text: str, n: int) -> int:
    """The index in `text` just past its `n`-th counted character."""
    if n <= 0:
        return 0
    seen = 0
    for k, ch in enumerate(text):
        if not _UNCOUNTED.match(ch):
            seen += 1
            if seen == n:
                return k + 1
    return len(text)


def kept_logprob(gen: Generation, kept: int) -> float:
    """Mean log-likelihood of the tokens behind the first `kept` counted characters of `gen.text` (a token
    counts if any of its text is kept; the end-of-sequence token when all of it is). Without per-token figures
    from the generator: the whole continuation's mean."""
    lps, ends = gen.token_logprobs, gen.token_ends
    if not lps or len(lps) != len(ends):
        return gen.mean_logprob
    cut = _index_after(gen.text, kept)
    if cut >= len(gen.text):
        return sum(lps) / len(lps)
    starts = (0, *ends[:-1])
    chosen = [lp for lp, start in zip(lps, starts, strict=True) if start < cut]
    return sum(chosen) / len(chosen) if chosen else gen.mean_logprob


def visible(text: str) -> str:
    """Generated text without invisible format characters."""
    return _INVISIBLE.sub("", text)


def start_state(section: ChainSection, split: SplitFn) -> SectionState:
    """The user's prompt opens the section; an unfinished last sentence waits for the model to finish it."""
    pieces = split([section.prompt])[0]
    state = SectionState()
    if pieces and not is_complete(pieces[-1]):
        state.pending = pieces[-1]
        pieces = pieces[:-1]
    if pieces:
        state.paragraphs = [list(pieces)]
    if state.chars >= section.params.target_chars and not state.pending:
        state.done = True
    return state


def prompt_for(section: ChainSection, state: SectionState) -> str:
    """The text the next continuation follows; the section's `prompt_prefix` goes with it separately."""
    context = state.sentences[-section.params.context_sentences :]
    text = " ".join([*context, state.pending] if state.pending else context)
    if section.params.prefix_heading:
        text = f"{section.heading}\n{text}"
    return text


def _verdicts(
    sentences: Sequence[str], repeat: Guard, copy: Guard, params: GenerationParams
) -> Iterator[tuple[str, str | None]]:
    """Each sentence in turn with the first guard that rejects it (None: it passes), a repeat also counting the
    earlier sentences of the same candidate."""
    local = RepeatGuard(n=params.repeat_ngram, overlap=params.repeat_overlap)
    for s in sentences:
        if repeat.rejects(s) or local.rejects(s):
            yield s, "repeat"
        elif copy.rejects(s):
            yield s, "copy"
        elif _MARKUP.search(s):
            yield s, "markup"
        else:
            yield s, None
        local.add(s)


def _judge(sentences: Sequence[str], repeat: Guard, copy: Guard, params: GenerationParams) -> str | None:
    """None when every sentence passes, else the first failing guard's name."""
    if not sentences:
        return "incomplete"
    return next((why for _, why in _verdicts(sentences, repeat, copy, params) if why), None)


def _passing_prefix(sentences: Sequence[str], repeat: Guard, copy: Guard, params: GenerationParams) -> list[str]:
    return [s for s, _ in itertools.takewhile(lambda v: v[1] is None, _verdicts(sentences, repeat, copy, params))]


def _append(section: ChainSection, state: SectionState, sentences: Sequence[str], repeat: Repeats) -> None:
    p = section.params
    for s in sentences:
        if not state.paragraphs:
            state.paragraphs.append([])
        elif len(paragraph_text(state.paragraphs[-1])) >= p.paragraph_chars:
            state.paragraphs.append([])
        state.paragraphs[-1].append(s)
        state.pending = ""
        repeat.add(s)
        if state.chars >= p.target_chars:
            state.done = True
            return


def _update(
    section: ChainSection,
    state: SectionState,
    gens: Sequence[Generation],
    pieces: Sequence[Sequence[str]],
    repeat: Repeats,
    copy: Guard,
    topic: TopicMargin | None = None,
) -> None:
    p = section.params
    state.tokens += sum(g.tokens for g in gens)
    found = [complete_with_ends(pc, model_ended=g.finished) for g, pc in zip(gens, pieces, strict=True)]
    complete = [[s for s, _ in f] for f in found]
    pending = counted(state.pending)

    def score(j: int, n: int) -> float:
        """Candidate j's mean log-likelihood over what its first n sentences keep of its text, plus its topic
        margin over those sentences."""
        value = kept_logprob(gens[j], found[j][n - 1][1] - pending) if n else gens[j].mean_logprob
        if topic is not None and p.topic_weight and n:
            value += p.topic_weight * topic(" ".join(complete[j][:n]))
        return value

    verdicts = [_judge(c, repeat, copy, p) for c in complete]
    clean = [j for j, v in enumerate(verdicts) if v is None]
    for v in verdicts:
        if v is not None:
            state.rejected[v] += 1
    if clean:
        best = max(clean, key=lambda j: (score(j, len(complete[j])), -j))
        _append(section, state, complete[best], repeat)
        state.retries = 0
    else:
        state.retries += 1
        state.retry_rounds += 1
        if state.retries > p.max_retries:
            prefixes = [_passing_prefix(c, repeat, copy, p) for c in complete]
            best = max(range(len(gens)), key=lambda j: (len(prefixes[j]), score(j, len(prefixes[j])), -j))
            if prefixes[best]:
                _append(section, state, prefixes[best], repeat)
            state.moved_on += 1
            state.retries = 0
    state.step += 1
    if not state.done and state.step >= p.step_cap:
        state.done = True
        state.capped = True


def run_chain(
    sections: Sequence[ChainSection],
    generate: GenerateFn,
    split: SplitFn,
    *,
    seed: int = 0,
    copy_guards: Mapping[int, Guard] | None = None,
    topics: Mapping[int, TopicMargin] | None = None,
    states: Mapping[int, SectionState] | None = None,
    on_round: Callable[[dict[int, SectionState], list[int]], None] | None = None,
    written: Sequence[str] = (),
) -> dict[int, SectionState]:
    """Advance every section until each is done; `states` continues sections from a saved point. `written`:
    the sentences of the document's other sections (reused, not generated here), repeats like any other.
    `topics`: per section index, its topic margin of a text (sections without one are judged by likelihood).

    `on_round(states, advanced)` runs after each round (save, report progress); an exception in it stops
    the run with everything up to that round already handed over."""
    by_index = {s.index: s for s in sections}
    st: dict[int, SectionState] = {s.index: (states or {}).get(s.index) or start_state(s, split) for s in sections}
    shared = SharedRepeats([*written, *(s for i in sorted(st) for s in st[i].sentences)])
    repeats = {i: shared.view(n=by_index[i].params.repeat_ngram, overlap=by_index[i].params.repeat_overlap) for i in st}
    copies = dict(copy_guards or {})
    topic_of = dict(topics or {})
    no_copy = NoCopyGuard()
    while True:
        active = [i for i in sorted(st) if not st[i].done]
        if not active:
            return st
        requests: list[Request] = []
        owners: list[int] = []
        for i in active:
            sec, state = by_index[i], st[i]
            prompt = prompt_for(sec, state)
            sampling = Sampling.from_params(sec.params)
            for j in range(sec.params.candidates):
                seed_j = row_seed(seed, i, state.step, j)
                requests.append(Request(prompt, sec.expert, sampling, seed_j, prefix=sec.prompt_prefix))
                owners.append(i)
        t0 = time.monotonic()
        gens = generate(requests)
        if len(gens) != len(requests):
            raise RuntimeError(f"generate returned {len(gens)} texts for {len(requests)} requests")
        # The prompt ended with the pending fragment, so the continuation attaches to it exactly as generated.
        texts = [" ".join((st[o].pending + visible(g.text)).split()) for o, g in zip(owners, gens, strict=True)]
        pieces = split(texts)
        elapsed = time.monotonic() - t0
        for i in active:
            rows = [k for k, o in enumerate(owners) if o == i]
            _update(
                by_index[i],
                st[i],
                [gens[k] for k in rows],
                [pieces[k] for k in rows],
                repeats[i],
                copies.get(i, no_copy),
                topic_of.get(i),
            )
            st[i].seconds += elapsed * len(rows) / len(requests)
        if on_round is not None:
            on_round(st, active)
