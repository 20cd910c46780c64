"""An output layer that scores a subset of the vocabulary (see `vocabulary.py`)."""

from __future__ import annotations

from typing import Any

import torch

from .int8_head import Int8Rows
from .packed_linear import packed_linear, packed_weight


class SubsetHead(torch.nn.Module):
    """Stands in for a linear output layer: scores only the ids in `index`, in that order (column j: id
    index[j]; the host's sampler maps them back). Holds the same weight (and bias) Parameters under the same
    names; `refresh` after their values change (a freeze expert swapped in). `packed`: multiply with those rows
    packed for oneDNN (see packed_linear.py); `int8`: in int8 (see int8_head.py)."""

    def __init__(self, head: torch.nn.Module, index: torch.Tensor, *, packed: bool = False, int8: bool = False) -> None:
        super().__init__()
        self.weight = head.weight
        self.bias = head.bias
        self.index = index
        self.packed = packed and not int8
        self.int8 = int8
        self.rows: Any
        self.row_bias: torch.Tensor | None
        self.refresh()

    def refresh(self) -> None:
        with torch.no_grad():
            self.rows = self.weight.index_select(0, self.index)
            self.row_bias = self.bias.index_select(0, self.index) if self.bias is not None else None
        if self.int8:
            self.rows = Int8Rows(self.rows)
        elif self.packed:
            self.rows = packed_weight(self.rows)

    def forward(self, hidden: Any) -> Any:
        if self.int8:
            return self.rows(hidden, self.row_bias)
        if self.packed:
            return packed_linear(hidden, self.rows, self.row_bias, len(self.index))
        return torch.nn.functional.linear(hidden, self.rows, self.row_bias)
