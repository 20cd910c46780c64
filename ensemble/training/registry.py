"""Trained experts on disk: `<work_dir>/experts/<name>/{manifest.json, adapter/, dataset/}`.

The manifest is written last, so an expert with a readable manifest is complete."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config.project import ProjectConfig
from ..core.artifacts import read_json
from ..core.errors import ArtifactError

MANIFEST_FORMAT = "ensemble-expert/1"


class BaseRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name_or_path: str
    fingerprint: str
    revision: str | None = None


class ExpertManifest(BaseModel):
    """What one trained expert is and how it was made. Unknown keys (from a newer version) are ignored with a
    warning rather than refused: this is our own artifact, not user input."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: str = MANIFEST_FORMAT
    name: str
    title: str | None = None
    method: Literal["lora", "freeze"]
    base: BaseRef
    adapter: str = "adapter"  # relative to the expert directory
    trained_tensors: list[str] = Field(default_factory=list)  # method freeze: names in adapter/trained.safetensors
    condition: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    trainable_params: int = 0
    total_params: int = 0
    val_perplexity_before: float
    val_perplexity_after: float
    val_perplexity_by_epoch: list[float] = Field(default_factory=list)  # every validation during training
    val_history: list[dict[str, Any]] = Field(default_factory=list)  # the same with step and epoch
    best_epoch: float | None = None  # the validation whose adapter was saved (None: the last one was saved)
    best_step: int | None = None
    stopped_early: bool = False
    improved: bool | None = None  # best validation perplexity below the base's (None: an older manifest)
    steps: int = 0
    epochs: float = 0.0
    tokens_seen: int = 0
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory_bytes: int = 0
    peak_memory_kind: str = ""
    resumed_from: str | None = None
    config_hash: str = ""
    created_at: str = ""
    path: str | None = Field(None, exclude=True)  # filled on read: the expert directory

    @model_validator(mode="before")
    @classmethod
    def _warn_unknown(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                warnings.warn(
                    f"expert manifest has keys unknown to this version ({', '.join(unknown)}); ignored",
                    stacklevel=2,
                )
        return data

    @property
    def adapter_path(self) -> Path:
        if self.path is None:
            raise ValueError("manifest was not read from disk")
        return Path(self.path) / self.adapter


def experts_root(cfg: ProjectConfig) -> Path:
    return cfg.work_path / "experts"


def expert_dir(cfg: ProjectConfig, name: str) -> Path:
    return experts_root(cfg) / name


def read_manifest(directory: Path) -> ExpertManifest:
    path = directory / "manifest.json"
    data = read_json(path)
    try:
        manifest = ExpertManifest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(
            f"invalid expert manifest ({where}: {first['msg']}); retrain with `ensemble train-experts … --force`",
            path=path,
        ) from None
    return manifest.model_copy(update={"path": str(directory)})


def read_expert(cfg: ProjectConfig, name: str) -> ExpertManifest:
    d = expert_dir(cfg, name)
    if not (d / "manifest.json").is_file():
        raise ArtifactError(
            f"expert '{name}' is not trained; run `ensemble train-experts topics.yaml --only {name}`",
            key=name,
        )
    return read_manifest(d)


def list_experts(cfg: ProjectConfig) -> list[ExpertManifest]:
    """Every finished expert, by name."""
    root = experts_root(cfg)
    if not root.is_dir():
        return []
    return [read_manifest(d) for d in sorted(root.iterdir()) if (d / "manifest.json").is_file()]


def load_expert_passages(cfg: ProjectConfig, name: str, split: Literal["all", "train", "val"] = "all") -> list[str]:
    """The passage texts an expert saw (train) and was validated on (val); for copy guards and evaluation."""
    read_expert(cfg, name)
    d = expert_dir(cfg, name) / "dataset"
    files = {"all": ["train.jsonl", "val.jsonl"], "train": ["train.jsonl"], "val": ["val.jsonl"]}[split]
    out: list[str] = []
    for fname in files:
        path = d / fname
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ArtifactError(
                f"dataset file missing; retrain with `ensemble train-experts … --only {name} --force`",
                path=path,
            ) from None
        for i, line in enumerate(lines, 1):
            if line.strip():
                try:
                    out.append(json.loads(line)["text"])
                except (ValueError, KeyError, TypeError):
                    raise ArtifactError("corrupt dataset line; retrain this expert", path=path, line=i) from None
    return out


def load_trained_tensors(manifest: ExpertManifest) -> dict[str, Any]:
    """Method freeze: the trained tensors, by parameter name of the base model."""
    from safetensors.torch import load_file

    path = manifest.adapter_path / "trained.safetensors"
    try:
        return load_file(str(path))
    except (OSError, RuntimeError) as e:
        raise ArtifactError(f"cannot read trained weights ({e}); retrain this expert", path=path) from None


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT calls a transformers method that transformers 5 deprecated; not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def attach_expert(model: Any, manifest: ExpertManifest, *, adapter_name: str | None = None) -> Any:
    """Put an expert over a loaded base: LoRA → a PeftModel (or a further named adapter on one); freeze → the
    trained tensors copied into `model` in place. Returns the model to use."""
    name = adapter_name or manifest.name
    if manifest.method == "lora":
        from peft import PeftModel

        with quiet_peft():
            if isinstance(model, PeftModel):
                model.load_adapter(str(manifest.adapter_path), adapter_name=name)
                return model
            return PeftModel.from_pretrained(model, str(manifest.adapter_path), adapter_name=name)
    tensors = load_trained_tensors(manifest)
    params = dict(model.named_parameters())
    missing = [k for k in tensors if k not in params]
    if missing:
        raise ArtifactError(
            f"trained tensors do not fit this base ({missing[0]} unknown); was the expert trained on another base?",
            path=manifest.adapter_path,
        )
    import torch

    with torch.no_grad():
        for k, v in tensors.items():
            params[k].copy_(v.to(params[k].dtype))
    return model


def check_base_matches(manifest: ExpertManifest, fingerprint: str) -> None:
    if manifest.base.fingerprint != fingerprint:
        raise ArtifactError(
            f"expert '{manifest.name}' was trained on a different base model; "
            f"retrain it with `ensemble train-experts … --only {manifest.name} --force`",
            path=Path(manifest.path or ".") / "manifest.json",
        )
