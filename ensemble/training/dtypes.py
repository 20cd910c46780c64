"""Which number format each tensor of an expert in training is held in.

One layout for plain and DeepSpeed runs: frozen tensors in the training dtype (bf16/fp16 when training in half
precision, else fp32), trained tensors in fp32. A plain run gets there by loading and casting (`load_dtype`,
`hold_dtypes`); DeepSpeed casts the whole module to half precision and keeps fp32 master copies of the trained
tensors in its optimizer, which `fp32_from_masters` puts back into the module when training ends. So both save
fp32 adapters and measure perplexity over the same frozen weights.
"""

from __future__ import annotations

from typing import Any

from .runtime import Precision


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def load_dtype(method: str, precision: Precision) -> Any:
    """The dtype to load the base in: LoRA trains none of its weights, so the training dtype (PEFT keeps the
    adapter in fp32); freeze trains some base weights, so fp32 (`hold_dtypes` then casts the frozen ones)."""
    import torch

    return precision.dtype if method == "lora" else torch.float32


def hold_dtypes(model: Any, precision: Precision) -> None:
    """Trained tensors (requires_grad now, before any gradual unfreezing closes some) in fp32, the others in
    the training dtype."""
    import torch

    for p in model.parameters():
        if not p.is_floating_point():
            continue
        want = torch.float32 if p.requires_grad else precision.dtype
        if p.dtype != want:
            p.data = p.data.to(want)


def fp32_from_masters(model: Any) -> int:
    """After a DeepSpeed run in half precision: every trained tensor the module holds in bf16/fp16 gets its
    optimizer's fp32 master copy back (the best checkpoint's, once the Trainer restored it). Returns how many."""
    import torch
    from deepspeed.utils import safe_get_full_fp32_param

    restored = 0
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != torch.float32 and hasattr(p, "_hp_mapping"):
            master = safe_get_full_fp32_param(p)
            if master is not None:
                p.data = master.detach().to(p.device, torch.float32).reshape(p.shape).clone()
                restored += 1
    return restored


def parameter_dtypes(model: Any) -> dict[str, str | None]:
    """The dtypes of the trained and of the frozen parameters as training left them."""
    trained = sorted({dtype_name(p.dtype) for p in model.parameters() if p.requires_grad})
    frozen = sorted({dtype_name(p.dtype) for p in model.parameters() if not p.requires_grad})
    return {"trained_dtype": "/".join(trained) or None, "frozen_dtype": "/".join(frozen) or None}
