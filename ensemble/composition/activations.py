"""The tanh approximation of GELU as torch's one fused op instead of the formula written out in tensor ops.

GPT-2 (and other models configured with `gelu_new` or `gelu_fast`) evaluate 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))
as seven separate elementwise passes over the MLP's widest activations at every step; torch's
`gelu(approximate="tanh")` computes the same function in one pass (transformers' `GELUTanh`: "equivalent to NewGELU
and FastGELU but much faster", up to rounding). Elementwise either way, so a row's values never depend on its batch.
"""

from __future__ import annotations

from typing import Any


def fuse_tanh_gelu(model: Any) -> int:
    """Replace `model`'s written-out tanh-GELU modules by transformers' fused one; returns how many."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped
