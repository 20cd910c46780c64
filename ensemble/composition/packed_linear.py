"""Linear layers that multiply with a weight pre-packed for oneDNN: the host's matmuls on a CPU in float32.

A decoding step multiplies a few rows by every weight matrix. torch's default CPU path (MKL) re-packs the weight
on every call, which at 1-20 rows costs about as much as the multiplication, and it sums a single row (a
matrix-vector product) in another order than a batch, so a row alone and the same row in a batch can round
apart. Packed once, oneDNN's kernel makes a decoding round 1.2-1.3x faster (benchmarks/compose.py, "host
plain") and gives every row the same bits whatever the number of rows beside it. The packed copy replaces the
weight's values in memory (`release`), except where a freeze expert writes into the weight: there both are kept
and `refresh` packs the weight again after each write.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch

# The number of rows oneDNN is told to expect: it only steers the kernel's choice, never the result.
ROWS_HINT = 16
MADV_DONTNEED = 4  # Linux
# An output layer is packed this many outputs at a time (PackedHead).
HEAD_SLICE = 8192


def packing_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Packed matmuls are used on a CPU computing in float32, where torch has oneDNN."""
    return (
        device.type == "cpu"
        and dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), ROWS_HINT)


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, out_features: int) -> Any:
    flat = x.reshape(-1, x.shape[-1])
    y = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
    return y.reshape(*x.shape[:-1], out_features)


class PackedLinear(torch.nn.Module):
    """Stands in for a `torch.nn.Linear` or a GPT-2 `Conv1D` (the same map with its weight stored transposed):
    the same weight and bias Parameters under the same names, plus their packed copy, which `refresh` renews
    after the weight's values change.

    `side` (extra outputs × inputs): more outputs computed in the same product (LoRA adapters' first matrices,
    lora_rows.py), left in `side_output` for whoever reads them next; the layer's own outputs are unchanged
    (the same bits: each output sums its inputs in the same order) and a small product's fixed cost is saved."""

    def __init__(self, layer: torch.nn.Module, side: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = layer.weight
        self.bias = layer.bias
        self.transposed = not isinstance(layer, torch.nn.Linear)
        self.out_features = self.weight.shape[1] if self.transposed else self.weight.shape[0]
        self.side = side
        self.side_output: torch.Tensor | None = None
        self.packed: torch.Tensor
        self._packed_bias: torch.Tensor | None = None
        self.refresh()

    def refresh(self) -> None:
        if self.weight.numel() == 0:
            raise RuntimeError("this layer's weight was released; it cannot be packed again")
        weight = self.weight.t() if self.transposed else self.weight
        if self.side is None:
            self.packed = packed_weight(weight)
            return
        with torch.no_grad():
            self.packed = packed_weight(torch.cat([weight, self.side.to(weight.dtype)]))
            if self.bias is not None:
                self._packed_bias = torch.cat([self.bias.detach(), self.bias.new_zeros(len(self.side))])

    def release(self, file_maps: Sequence[tuple[int, int]] = ()) -> None:
        """Free the weight's values (the Parameter stays, empty, with its dtype and device): only the packed
        copy is held from now on. `file_maps`: the address ranges mapped from files (`file_mappings()`)."""
        forget_file_pages(self.weight, file_maps)
        with torch.no_grad():
            self.weight.data = self.weight.data.new_empty(0)

    def forward(self, x: torch.Tensor) -> Any:
        if self.side is None:
            return packed_linear(x, self.packed, self.bias, self.out_features)
        y = packed_linear(x, self.packed, self._packed_bias, self.out_features + len(self.side))
        self.side_output = y[..., self.out_features :]
        return y[..., : self.out_features]


class PackedHead(torch.nn.Module):
    """Stands in for a linear output layer in float32: the same weight (and bias) Parameters under the same names
    (a tied embedding keeps its own), plus a packed copy made HEAD_SLICE outputs at a time, the weight's file
    pages given back slice by slice (`file_maps`, as for `release`), so packing never holds the whole layer
    twice; `refresh` after the values change."""

    def __init__(self, head: torch.nn.Linear, file_maps: Sequence[tuple[int, int]] = ()) -> None:
        super().__init__()
        self.weight = head.weight
        self.bias = head.bias
        self.slices: list[tuple[torch.Tensor, torch.Tensor | None, int]] = []
        self.refresh(file_maps)

    def refresh(self, file_maps: Sequence[tuple[int, int]] = ()) -> None:
        """`file_maps`: never for a weight a freeze expert writes into (its written pages would be lost)."""
        self.slices = []
        for at in range(0, self.weight.shape[0], HEAD_SLICE):
            rows = self.weight[at : at + HEAD_SLICE]
            bias = self.bias[at : at + HEAD_SLICE].detach() if self.bias is not None else None
            self.slices.append((packed_weight(rows), bias, len(rows)))
            forget_file_pages(rows, file_maps)

    def forward(self, x: torch.Tensor) -> Any:
        return torch.cat([packed_linear(x, packed, bias, n) for packed, bias, n in self.slices], -1)


def file_mappings() -> list[tuple[int, int]]:
    """The address ranges of this process mapped from files (Linux; elsewhere none)."""
    out = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[4] != "0" and fields[5].startswith("/"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    out.append((start, end))
    except OSError:
        return []
    return out


def forget_file_pages(weight: torch.Tensor, file_maps: Sequence[tuple[int, int]]) -> None:
    """Weights loaded from a safetensors file are views of the file mapped into memory, one mapping for the
    whole file, which freeing one tensor does not unmap: the pages packing read would stay resident beside
    the packed copy. Tell the kernel to drop the pages lying wholly inside this weight (they are clean file
    pages, read again from the file if ever touched). Anything not mapped from a file is left alone."""
    start = weight.data_ptr()
    end = start + weight.numel() * weight.element_size()
    if not any(lo <= start and end <= hi for lo, hi in file_maps):
        return
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page
    if last > first:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), MADV_DONTNEED)


def pack_linears(
    model: torch.nn.Module, *, keep: Collection[int] = (), sides: Mapping[int, torch.Tensor] | None = None
) -> list[PackedLinear]:
    """Replace every plain `torch.nn.Linear` and GPT-2 `Conv1D` of `model` by a PackedLinear, except the output
    layer and any layer sharing its weight with the input embeddings (an embedding must stay a plain matrix),
    and the LoRA adapters' own small layers. Each layer's weight is released as soon as it is packed (so the
    peak memory holds one layer twice, not the model), unless its id is in `keep`. `sides`: a layer's extra
    outputs (PackedLinear's `side`) by the id of the layer. Returns the new layers."""
    from transformers.pytorch_utils import Conv1D

    skip = set()
    for get in ("get_input_embeddings", "get_output_embeddings"):
        layer = getattr(model, get, lambda: None)()
        if layer is not None and getattr(layer, "weight", None) is not None:
            skip.add(id(layer.weight))
    # A weight whose memory another Parameter also uses (tied in some other way) stays as it is.
    holders: dict[int, set[int]] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        if param.numel():
            holders.setdefault(param.data_ptr(), set()).add(id(param))
    skip |= {i for ids in holders.values() if len(ids) > 1 for i in ids}
    out: list[PackedLinear] = []
    file_maps = file_mappings()
    for name, parent in list(model.named_modules()):
        if ".lora_" in f".{name}":
            continue
        for child_name, child in list(parent.named_children()):
            if type(child) in (torch.nn.Linear, Conv1D) and id(child.weight) not in skip:
                packed = PackedLinear(child, (sides or {}).get(id(child)))
                if id(child.weight) not in keep:
                    packed.release(file_maps)
                setattr(parent, child_name, packed)
                out.append(packed)
    return out
