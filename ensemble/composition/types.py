"""What the chaining loop asks of a generator, and what it gets back (so tests can fake the model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import GenerationParams


@dataclass(frozen=True)
class Sampling:
    """Per-row decoding settings; rows with different settings still share one batch. No defaults here:
    they live in GenerationParams (`from_params`)."""

    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    penalty_exempt_particles: bool
    no_repeat_ngram_size: int

    @classmethod
    def from_params(cls, p: GenerationParams) -> Sampling:
        return cls(
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
            top_k=p.top_k,
            top_p=p.top_p,
            repetition_penalty=p.repetition_penalty,
            penalty_exempt_particles=p.penalty_exempt_particles,
            no_repeat_ngram_size=p.no_repeat_ngram_size,
        )


@dataclass(frozen=True)
class Request:
    prompt: str
    expert: str  # a trained expert's name, or "base"
    sampling: Sampling
    seed: int  # this row's own random stream: its sample never depends on the other rows of the batch
    # Put before `prompt` and never cut (a long prompt loses its oldest text instead): the condition tokens
    # an expert was trained with.
    prefix: str = ""


@dataclass(frozen=True)
class Generation:
    text: str  # the continuation only, without the prompt
    mean_logprob: float  # mean log-likelihood of the sampled tokens under the expert (temperature 1)
    tokens: int
    finished: bool  # stopped on end-of-sequence rather than max_new_tokens
    # Per sampled token, the end-of-sequence one included: its log-likelihood, and the length of `text` decoded
    # through it. Left empty by a generator that does not report them; candidates are then ranked by
    # `mean_logprob`, the whole continuation's.
    token_logprobs: tuple[float, ...] = ()
    token_ends: tuple[int, ...] = ()


GenerateFn = Callable[[Sequence[Request]], list[Generation]]
SplitFn = Callable[[list[str]], list[list[str]]]
