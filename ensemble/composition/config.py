"""`outline.yaml`: the document to write — its title, generation defaults and one entry per section.

Every generation setting lives in `defaults` and may be overridden on a section with the same key written
inline (`temperature: 0.8` on a section). Each default is defined here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, PrivateAttr, create_model, field_validator, model_validator

from ..config.loader import StrictModel, format_loc, line_of, load_model
from ..core.errors import ConfigError
from ..training.runtime import PrecisionName

BASE_EXPERT = "base"
VOCABULARY = "corpus"
TOPIC_WEIGHT = 3.0


class GenerationParams(StrictModel):
    """How a section is generated (the `defaults` block; every key may be overridden on a section).

    Repetition control is Korean-aware: the recipe's repetition_penalty 2.0 also punished particles
    (은/는/이/가, 을/를, …) and sentence punctuation that a Korean text must repeat, so the default is a mild
    penalty that exempts them, plus a ban on repeating any 4-token sequence.
    """

    target_chars: int = Field(1000, gt=0, description="stop at the first sentence boundary past this many characters")
    paragraph_chars: int = Field(400, gt=0, description="start a new paragraph once the current one is this long")
    max_new_tokens: int = Field(64, gt=0, description="tokens generated per chaining step")
    context_sentences: int = Field(2, ge=1, description="sentences written last that prompt the next step")
    prefix_heading: bool = Field(False, description="put the section heading before the context in every prompt")
    candidates: int = Field(3, ge=1, description="continuations sampled per step; the best one passing the guards wins")
    temperature: float = Field(1.0, ge=0, description="0 = greedy decoding")
    top_k: int = Field(30, ge=0, description="sample among the k most likely tokens (0 = no limit)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    repetition_penalty: float = Field(
        1.15,
        ge=1,
        description="divides the logit of tokens already in the context (1 = off); particles exempt",
    )
    penalty_exempt_particles: bool = Field(
        True, description="exempt Korean particles and punctuation from repetition_penalty"
    )
    no_repeat_ngram_size: int = Field(4, ge=0, description="never repeat a token n-gram of the context (0 = off)")
    repeat_ngram: int = Field(3, ge=1, description="character n-grams compared by the repeat guard")
    repeat_overlap: float = Field(
        0.8,
        gt=0,
        le=1,
        description="reject a sentence sharing this fraction of n-grams with one already written",
    )
    copy_ngram: int = Field(8, ge=1, description="n-gram length of the copy guard")
    copy_unit: Literal["word", "char"] = Field("word", description="copy guard n-grams of words or of characters")
    copy_threshold: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="reject a sentence when more than this fraction of its n-grams is in the "
        "expert's training passages (0: any shared n-gram)",
    )
    topic_weight: float = Field(
        TOPIC_WEIGHT,
        ge=0,
        description="how much a candidate's lead of its own expert over the others counts beside its likelihood "
        "(BM25 of its words against each expert's passages, per word); 0: likelihood alone",
    )
    max_retries: int = Field(3, ge=0, description="rounds without a passing candidate before moving on")
    max_steps: int | None = Field(None, gt=0, description="hard cap on chaining steps; unset: 20 + target_chars / 20")

    @property
    def step_cap(self) -> int:
        return self.max_steps if self.max_steps is not None else 20 + self.target_chars // 20


def _partial(model: type[StrictModel], name: str) -> type[StrictModel]:
    """The same keys and constraints as `model`, every one optional and unset by default."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        ann = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[key] = (Optional[ann], Field(None, description=info.description))  # noqa: UP045
    return create_model(name, __base__=StrictModel, **fields)


_Overrides = _partial(GenerationParams, "GenerationOverrides")


class SectionSpec(_Overrides):  # type: ignore[misc, valid-type]
    heading: str = Field(..., description="the section's `## heading`")
    expert: str = Field(..., description=f"a trained topic name, or '{BASE_EXPERT}' for the base model alone")
    prompt: str = Field(..., description="one to three opening sentences")

    @field_validator("heading", "expert", "prompt")
    @classmethod
    def _text(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("must not be empty")
        return v

    def overrides(self) -> dict[str, Any]:
        own = {"heading", "expert", "prompt"}
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in own and v is not None}


class OutlineFile(StrictModel):
    title: str = Field(..., description="the document's `# title`")
    precision: PrecisionName = Field(
        "auto",
        description="the base's dtype while composing; auto: bf16 on Ampere+, fp16 on older GPUs unless the "
        "architecture overflows in it, fp32 on CPU with an output layer of 32k+ ids in int8 (2-3x faster, "
        "nearly lossless). fp32: float32 throughout; on a GPU it keeps a row independent of its batch",
    )
    vocabulary: Literal["corpus", "all"] = Field(
        VOCABULARY,
        description="corpus: write only tokens the corpus uses or made of its characters (no markup or foreign "
        "scripts; the output layer scores those alone, faster on large vocabularies); all: the whole vocabulary",
    )
    defaults: GenerationParams = GenerationParams()
    sections: list[SectionSpec] = Field(..., description="in document order")

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("sections")
    @classmethod
    def _some(cls, v: list[SectionSpec]) -> list[SectionSpec]:
        if not v:
            raise ValueError("needs at least one section (heading, expert, prompt)")
        return v

    @model_validator(mode="after")
    def _merged_valid(self) -> OutlineFile:
        for s in self.sections:
            # Overrides are validated alone; their combination with `defaults` is checked here.
            GenerationParams.model_validate({**self.defaults.model_dump(), **s.overrides()})
        return self

    @property
    def source(self) -> Path | None:
        return self._source

    def params(self, i: int) -> GenerationParams:
        """`defaults` merged with section i's own overrides."""
        return GenerationParams.model_validate({**self.defaults.model_dump(), **self.sections[i].overrides()})

    def line(self, *loc: Any) -> int | None:
        return line_of(self._source, loc)

    def error(self, message: str, *loc: Any) -> ConfigError:
        """An error pointing at `loc` (e.g. "sections", 2, "expert") in this file."""
        return ConfigError(message, path=self._source, line=self.line(*loc), key=format_loc(loc) or None)


def load_outline(path: str | Path) -> OutlineFile:
    p = Path(path)
    outline = load_model(p, OutlineFile)
    outline._source = p
    return outline
