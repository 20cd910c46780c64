"""What an expert trains on the shared base: LoRA matrices (PEFT) or its upper blocks (partial freeze)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from .config import TrainParams
from .schedule import default_frozen

# Attention projections per architecture; GPT-2 style models use transformers' Conv1D (weights stored
# transposed), which PEFT must be told about with fan_in_fan_out.
LORA_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj"],
    "gpt_bigcode": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "bloom": ["query_key_value"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
_LLAMA_STYLE = ["q_proj", "k_proj", "v_proj", "o_proj"]

_BLOCK_PATHS = (
    "transformer.h",
    "gpt_neox.layers",
    "model.layers",
    "model.decoder.layers",
    "transformer.blocks",
)


@dataclass
class AdapterInfo:
    method: str
    trainable_params: int
    total_params: int
    trainable_names: list[str] = field(default_factory=list)
    n_layers: int = 0
    frozen_layers: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def init_adapter(model: Any, params: TrainParams) -> tuple[Any, AdapterInfo]:
    """Wrap or prepare `model` for training one expert; returns the model to train and what is trained."""
    if params.method == "lora":
        return _setup_lora(model, params)
    if params.method == "freeze":
        return _setup_freeze(model, params)
    raise NotImplementedError(f"Unknown training method: {params.method}.")


def _leaf_names(model: Any) -> set[str]:
    import torch
    from transformers.pytorch_utils import Conv1D

    return {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear | Conv1D) and name
    }


def lora_targets(model: Any) -> list[str]:
    """The attention projections of this architecture, by model type or, failing that, by module names."""
    model_type = getattr(model.config, "model_type", "")
    leaves = _leaf_names(model)
    if model_type in LORA_TARGETS and set(LORA_TARGETS[model_type]) & leaves:
        return [t for t in LORA_TARGETS[model_type] if t in leaves]
    if {"q_proj", "v_proj"} <= leaves:
        return [t for t in _LLAMA_STYLE if t in leaves]
    for known in (["query_key_value"], ["c_attn", "c_proj"]):
        if set(known) <= leaves:
            return known
    raise ConfigError(
        f"cannot tell which modules of a '{model_type}' model to adapt with LoRA; "
        "list them in lora.target_modules (e.g. [q_proj, v_proj])",
        key="lora.target_modules",
    )


def _setup_lora(model: Any, params: TrainParams) -> tuple[Any, AdapterInfo]:
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    targets = list(params.lora.target_modules or lora_targets(model))
    leaves = _leaf_names(model)
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise ConfigError(
            f"no module named {', '.join(missing)} in this model; available: {', '.join(sorted(leaves))}",
            key="lora.target_modules",
        )
    fan_in_fan_out = any(isinstance(m, Conv1D) and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())
    config = LoraConfig(
        r=params.lora.r,
        lora_alpha=params.lora.alpha,
        lora_dropout=params.lora.dropout,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
        task_type="CAUSAL_LM",
    )
    total = sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(model, config)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    info = AdapterInfo(
        "lora",
        trainable,
        total,
        names,
        details={"target_modules": targets, "fan_in_fan_out": fan_in_fan_out},
    )
    return peft_model, info


def find_blocks(model: Any) -> Any:
    """The ModuleList of transformer blocks."""
    import torch

    for path in _BLOCK_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(cfg, "num_hidden_layers", None)
    for _, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n:
            return mod
    raise ConfigError(
        f"cannot find the transformer blocks of a '{model.config.model_type}' model; use method: lora",
        key="method",
    )


def block_index_of(model: Any) -> dict[int, int]:
    """id(parameter) → index of the block that holds it."""
    return {id(p): i for i, block in enumerate(find_blocks(model)) for p in block.parameters()}


def _setup_freeze(model: Any, params: TrainParams) -> tuple[Any, AdapterInfo]:
    import torch

    blocks = find_blocks(model)
    n_layers = len(blocks)
    frozen = params.freeze.layers if params.freeze.layers is not None else default_frozen(n_layers)
    if frozen > n_layers:
        raise ConfigError(f"the model has {n_layers} blocks; cannot freeze {frozen}", key="freeze.layers")
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False)
    }
    frozen_ids = embedding_ids | {id(p) for b in blocks[:frozen] for p in b.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen_ids)
    # named_parameters() lists a tied weight once, under the name save/load use.
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ConfigError("nothing left to train: every block is frozen; lower freeze.layers", key="freeze.layers")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, AdapterInfo("freeze", trainable, total, names, n_layers, frozen)
