"""The output layer in int8 on a CPU: the widest matmul of a decoding step, 2-3x faster, nearly lossless.

At every step the output layer multiplies each row's last hidden state by the whole (or the corpus's)
vocabulary: 50k-262k outputs, a third of a GPT-2-124M step's arithmetic at 21 rows. fbgemm's int8 kernel does
it 2-3x faster than float32 packed for oneDNN on an AVX2 CPU (benchmarks/int8_head.py). Done plainly it loses
too much: the hidden state has a few channels far larger than the rest, so one scale per row leaves the others
a handful of levels (Gemma 3 270M: KL 0.05 nats per token from the base's own scores). Rotating the hidden size
by a fixed orthonormal Hadamard matrix (in blocks; the weight is rotated the same way once, so the product is
unchanged) spreads those channels over their block first: KL 0.005 on Gemma 3, 0.004 on SmolLM2 (README, "The
output layer in int8"). The body's layers stay in float32 (packed_linear.py): at 9-21 rows their own matmuls
are too small for int8 to win back the rotation and scaling around them.

A row's scores never depend on its batch neighbours: each row is scaled by its own largest value, and fbgemm,
which picks one quantization range for the whole batch, is handed one extra row holding -1 and +1, so that
range is always [-1, 1]; int8 products are summed exactly in int32 and everything else is per element. The
rotation multiplies with oneDNN's packed kernel, which gives a row the same bits whatever the rows beside it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .packed_linear import forget_file_pages, packed_linear, packed_weight, packing_available

# Rotation blocks: the largest power of two up to this that divides the hidden size (640 -> 128, 576 -> 64).
MAX_BLOCK = 128
# Output rows quantized at a time while building the int8 copy (bounds the float copy made on the way).
CHUNK_ROWS = 2048
SIGN_SEED = 0


def int8_available(device: torch.device, dtype: torch.dtype) -> bool:
    """An int8 output layer works on a CPU computing in float32 whose torch has fbgemm and oneDNN."""
    return (
        packing_available(device, dtype)
        and "fbgemm" in torch.backends.quantized.supported_engines
        and hasattr(torch.ops.quantized, "linear_dynamic")
        and hasattr(torch, "_make_per_channel_quantized_tensor")
    )


def block_size(features: int, largest: int = MAX_BLOCK) -> int:
    size = 1
    while features % (size * 2) == 0 and size * 2 <= largest:
        size *= 2
    return size


def rotation(size: int) -> torch.Tensor:
    """An orthonormal `size` x `size` Hadamard matrix with fixed random signs on its rows (size a power of 2)."""
    h = torch.ones(1, 1)
    while h.shape[0] < size:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    signs = torch.randint(0, 2, (size,), generator=torch.Generator().manual_seed(SIGN_SEED)) * 2 - 1
    return signs[:, None].float() * h / math.sqrt(size)


class Int8Rows:
    """`x @ weight.T` with `weight` (outputs x features, float32) held in int8, one scale per output."""

    def __init__(
        self, weight: torch.Tensor, file_maps: Sequence[tuple[int, int]] = (), *, max_block: int = MAX_BLOCK
    ) -> None:
        """`file_maps` (`file_mappings()`): drop the pages of `weight` mapped from its file as they are read,
        so that building the copy never holds the whole weight's pages besides it. `max_block` 1: no rotation
        (benchmarks/int8_head.py compares)."""
        outputs, features = weight.shape
        self.features = features
        self.block = block_size(features, max_block)
        turn = rotation(self.block)
        self.turn = packed_weight(turn.t().contiguous())  # x @ turn, as a linear layer computes it
        values = torch.empty(outputs, features, dtype=torch.int8)
        scales = torch.empty(outputs, dtype=torch.float64)
        with torch.no_grad():
            for at in range(0, outputs, CHUNK_ROWS):
                rows = weight[at : at + CHUNK_ROWS].detach()
                turned = (rows.reshape(len(rows), -1, self.block) @ turn).reshape(len(rows), features)
                scale = turned.abs().amax(1).div_(127).clamp_min_(1e-12)
                values[at : at + len(rows)] = turned.div_(scale[:, None]).round_()
                scales[at : at + len(rows)] = scale
                forget_file_pages(rows, file_maps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated as user-facing values
            quantized = torch._make_per_channel_quantized_tensor(
                values, scales, torch.zeros(outputs, dtype=torch.long), 0
            )
            self.packed = torch.ops.quantized.linear_prepack(quantized, None)
        self.bounds = torch.zeros(1, features)
        self.bounds[0, 0], self.bounds[0, 1 % features] = 1.0, -1.0

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> Any:
        flat = x.reshape(-1, self.features)
        turned = packed_linear(flat.reshape(-1, self.block), self.turn, None, self.block).reshape(flat.shape)
        scale = turned.abs().amax(1, keepdim=True).clamp_min(1e-30)
        # reduce_range: 7-bit activations, so fbgemm's paired 8-bit products never saturate 16 bits on AVX2.
        y = torch.ops.quantized.linear_dynamic(torch.cat([turned / scale, self.bounds]), self.packed, True)[:-1]
        y = torch.addcmul(bias, y, scale) if bias is not None else y * scale
        return y.reshape(*x.shape[:-1], y.shape[-1])


class Int8Head(torch.nn.Module):
    """Stands in for a linear output layer: the same weight (and bias) Parameters under the same names (tied
    embeddings keep theirs), plus their int8 copy, which `refresh` renews after the values change."""

    def __init__(self, head: torch.nn.Linear, file_maps: Sequence[tuple[int, int]] = ()) -> None:
        super().__init__()
        self.weight = head.weight
        self.bias = head.bias
        self.rows: Int8Rows
        self.refresh(file_maps)

    def refresh(self, file_maps: Sequence[tuple[int, int]] = ()) -> None:
        """`file_maps`: see Int8Rows (never for a weight a freeze expert writes into: its written pages would
        be lost)."""
        self.rows = Int8Rows(self.weight, file_maps)

    def forward(self, hidden: torch.Tensor) -> Any:
        return self.rows(hidden, self.bias)
