"""`topics.yaml`: the experts to train, the queries that find their data, and how to train them.

Training settings live in `defaults` and may be overridden per topic with the same keys written inline
(`lora: {r: 16}` on a topic keeps the other `lora` keys from `defaults`). Each default is defined here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, PrivateAttr, create_model, field_validator, model_validator

from ..config.loader import StrictModel, format_loc, line_of, load_model
from ..core.errors import ConfigError, EnsembleError
from .runtime import PrecisionName

# Learning rates suit the method, so an unset `learning_rate` means "the method's default".
DEFAULT_LR = {"lora": 3e-4, "freeze": 5e-5}


class LoraParams(StrictModel):
    r: int = Field(8, gt=0, description="rank of the low-rank update")
    alpha: float = Field(16, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, description="modules to adapt; unset: detected per architecture (GPT-2 c_attn/c_proj, …)"
    )


class FreezeParams(StrictModel):
    layers: int | None = Field(
        None, ge=0, description="freeze embeddings and the first N blocks; unset: half of the blocks"
    )
    gradual_unfreeze: bool = Field(False, description="train the top block first, unfreeze more each epoch")
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="learning rate of block i = lr × decay^(top − i); 1 = one learning rate"
    )


class ConditionParams(StrictModel):
    enabled: bool = Field(False, description="train on `[TOPIC] <name> [TEXT] <passage>` samples")
    keep_prob: float = Field(
        1.0, gt=0, le=1, description="probability of keeping each condition token (re-drawn every epoch)"
    )


class TrainParams(StrictModel):
    """Per-expert training settings (the `defaults` block; every key may be overridden on a topic)."""

    top_k: int = Field(500, gt=0, description="passages retrieved per query")
    min_passages: int = Field(
        50, ge=0, description="warn (with --strict: refuse) when a topic finds fewer passages after de-duplication"
    )
    method: Literal["lora", "freeze"] = "lora"
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after N optimizer steps (overrides epochs)")
    learning_rate: float | None = Field(None, gt=0, description="unset: 3e-4 for lora, 5e-5 for freeze")
    micro_batch_size: int = Field(4, gt=0)
    grad_accum: int = Field(4, gt=0, description="micro-batches per optimizer step")
    block_size: int = Field(256, ge=8, description="tokens per training sample")
    warmup_steps: int = Field(10, ge=0)
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"
    weight_decay: float = Field(0.0, ge=0)
    precision: PrecisionName = "auto"
    gradient_checkpointing: bool = Field(True, description="recompute activations: less memory, ~30% slower")
    deepspeed: str | None = Field(None, description="'zero2' (shipped config) or a DeepSpeed JSON file")
    save_steps: int | None = Field(None, gt=0, description="checkpoint every N steps; unset: every epoch")
    eval_steps: int | None = Field(
        None, gt=0, description="validate (and checkpoint) every N steps; unset: every epoch, or every save_steps"
    )
    patience: int = Field(
        2, ge=0, description="stop after N validations without a lower perplexity; 0: never stop early"
    )
    seed: int = 0
    packing: bool = Field(True, description="pack passages into full blocks with EOS separators")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    min_val_passages: int = Field(2, ge=1)
    lora: LoraParams = LoraParams()
    freeze: FreezeParams = FreezeParams()
    condition: ConditionParams = ConditionParams()

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]

    @model_validator(mode="after")
    def _coherent(self) -> TrainParams:
        if self.method == "lora" and self.freeze.gradual_unfreeze:
            raise ValueError("freeze.gradual_unfreeze applies to method 'freeze' only")
        if self.eval_steps and self.save_steps and self.eval_steps != self.save_steps:
            raise ValueError(
                "eval_steps and save_steps differ, but the best model is kept from the checkpoint of its validation; "
                "set only one of them"
            )
        return self


def _partial(model: type[StrictModel], name: str) -> type[StrictModel]:
    """The same keys as `model`, every one optional and unset by default (nested models partial too)."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, StrictModel):
            ann = _partial(ann, ann.__name__ + "Override")
        fields[key] = (Optional[ann], Field(None, description=info.description))  # noqa: UP045
    return create_model(name, __base__=StrictModel, **fields)


_TrainOverrides = _partial(TrainParams, "TrainOverrides")


class TopicSpec(_TrainOverrides):  # type: ignore[misc, valid-type]
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="slug: a-z, 0-9, - and _")
    title: str | None = Field(None, description="human-readable title (used in headings and reports)")
    queries: list[str] = Field(..., description="subtopic queries; each retrieves top_k passages")
    files: list[str] = Field(default_factory=list, description="extra text files (relative to topics.yaml)")

    @field_validator("queries")
    @classmethod
    def _queries(cls, v: list[str]) -> list[str]:
        v = [q.strip() for q in v]
        if not v:
            raise ValueError("needs at least one query")
        if any(not q for q in v):
            raise ValueError("queries must not be empty strings")
        return v

    def overrides(self) -> dict[str, Any]:
        own = {"name", "title", "queries", "files"}
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in own}


class TopicsFile(StrictModel):
    theme: str | None = Field(None, description="conjoined with every query (must match), e.g. 함께")
    defaults: TrainParams = TrainParams()
    topics: list[TopicSpec] = Field(..., min_length=1)

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("topics")
    @classmethod
    def _unique(cls, topics: list[TopicSpec]) -> list[TopicSpec]:
        first: dict[str, int] = {}
        for i, t in enumerate(topics):
            if t.name in first:
                raise ValueError(
                    f"duplicate topic name '{t.name}' (topics[{first[t.name]}] and topics[{i}]); names must be unique"
                )
            first[t.name] = i
        return topics

    def topic(self, name: str) -> TopicSpec:
        for t in self.topics:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def source(self) -> Path | None:
        return self._source

    def resolve(self, p: str) -> Path:
        """A path written in the file, relative to the file."""
        q = Path(p).expanduser()
        if q.is_absolute() or self._source is None:
            return q
        return self._source.resolve().parent / q

    def line(self, *loc: Any) -> int | None:
        return line_of(self._source, loc)

    def error(self, message: str, *loc: Any, cls: type[EnsembleError] = ConfigError) -> EnsembleError:
        """An error pointing at `loc` (e.g. "topics", 2, "queries") in this file."""
        return cls(message, path=self._source, line=self.line(*loc), key=format_loc(loc) or None)

    def topic_loc(self, name: str) -> tuple[Any, ...]:
        for i, t in enumerate(self.topics):
            if t.name == name:
                return ("topics", i)
        return ()

    def setting_loc(self, topic: TopicSpec, key: str) -> tuple[Any, ...]:
        """Where a training setting of `topic` comes from: the topic if it overrides it, else `defaults`."""
        if key in topic.model_fields_set:
            return (*self.topic_loc(topic.name), key)
        return ("defaults", key)

    def params(self, topic: TopicSpec) -> TrainParams:
        """`defaults` deep-merged with the topic's own overrides."""
        merged = _deep_merge(self.defaults.model_dump(), topic.overrides())
        return TrainParams.model_validate(merged)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_topics(path: str | Path) -> TopicsFile:
    p = Path(path)
    spec = load_model(p, TopicsFile)
    spec._source = p
    return spec
