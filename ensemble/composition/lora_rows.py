"""Per-row LoRA: a batch whose rows use different adapters, with two matmuls per layer.

PEFT's mixed-adapter batches (`adapter_names`) loop over the adapters in every LoRA layer: a gather of the
rows, two small matmuls and a scatter per adapter per layer, dozens of tiny ops per token. Here each LoRA layer
keeps its adapters side by side, `A` (in, adapters × r) and `B` (adapters × r, out); a forward hook adds
`((x @ A) * mask) @ B` to the base layer's output, where the row mask keeps each row's own adapter block
(times its scaling) and zeroes the others, while PEFT's own adapter path is switched off. On a CPU in float32
both products multiply with copies packed for oneDNN (packed_linear.py), as the base's layers do: torch's own
path sums a lone row in another order than a batch, which made a row's hidden state differ from itself alone
by ~1e-4 after a few steps (GPT-2-124M shape, 7 adapters); packed, the two are the same bits. There `x @ A` is
also packed into the base layer's own product (`sides()`, packed_linear's `side`): one matmul fewer per layer,
whose fixed cost was most of a product this narrow. Multiplying by every
adapter's A costs `in × adapters × r` per token, still tiny next to the layer; unlike gathering each row's
weights it holds nothing per row. The adapters stay PEFT adapters (loaded by PEFT, whose `lora_A`/`lora_B`
weights become views of the side-by-side matrices, so nothing is held twice).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any


def row_lora_or_none(peft_model: Any, names: Sequence[str], *, packed: bool = False) -> RowLora | None:
    """A RowLora over `names`, or None where an adapter is not plain LoRA (DoRA and other variants, extra
    trained modules, LoRA biases): those keep PEFT's own mixed-batch path. `packed`: multiply with copies
    packed for oneDNN (see packed_linear.py)."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer) and any(n in m.lora_A for n in names)]
    if not layers or getattr(peft_model, "modules_to_save", None):
        return None
    for layer in layers:
        if getattr(layer, "merged_adapters", None) or any(n in getattr(layer, "lora_variant", {}) for n in names):
            return None
        for n in names:
            if n in layer.lora_A and (layer.lora_A[n].bias is not None or layer.lora_B[n].bias is not None):
                return None
    return RowLora(peft_model, layers, names, packed=packed)


class RowLora:
    def __init__(self, peft_model: Any, layers: list[Any], names: Sequence[str], *, packed: bool = False) -> None:
        self.peft_model = peft_model
        self.names = list(names)
        self._layers = [_SideBySide(layer, self.names, packed) for layer in layers]

    @contextlib.contextmanager
    def rows(self, adapters: Sequence[str | None]) -> Iterator[None]:
        """Within this block every forward pass is a batch of len(adapters) rows, row i with adapter
        `adapters[i]` (None or an unknown name: the base weights); `select` changes the rows within it."""
        self.select(adapters)
        try:
            with self.peft_model.disable_adapter():
                yield
        finally:
            for layer in self._layers:
                layer.select(None)

    def select(self, adapters: Sequence[str | None]) -> None:
        """The rows of the following forward passes, inside `rows`: row i with adapter `adapters[i]`."""
        for layer in self._layers:
            layer.select(adapters)

    def sides(self) -> dict[int, Any]:
        """The adapters' first matrices side by side (outputs × inputs) by the id of the base layer they read
        the input of: packed with it (packed_linear's `side`), one product gives both."""
        return {id(layer.layer.get_base_layer()): layer.a.t() for layer in self._layers}


class _SideBySide:
    """One LoRA layer's adapters side by side, and the forward hook that applies each row's own."""

    def __init__(self, layer: Any, names: list[str], packed: bool = False) -> None:
        import torch

        from .packed_linear import packed_weight

        present = [n for n in names if n in layer.lora_A]
        weight = layer.lora_A[present[0]].weight
        self.rank = max(layer.lora_A[n].weight.shape[0] for n in present)
        d_in = weight.shape[1]
        d_out = layer.lora_B[present[0]].weight.shape[0]
        width = len(names) * self.rank
        self.names = names
        self.layer = layer
        self.scaling = {n: float(layer.scaling[n]) for n in present}
        with torch.no_grad():
            self.a = torch.zeros(d_in, width, dtype=weight.dtype, device=weight.device)
            self.b = torch.zeros(width, d_out, dtype=weight.dtype, device=weight.device)
            for k, name in enumerate(names):
                if name not in present:
                    continue
                a, b = layer.lora_A[name].weight, layer.lora_B[name].weight  # (r, in), (out, r)
                block = slice(k * self.rank, k * self.rank + a.shape[0])
                self.a[:, block] = a.t()
                self.b[block, :] = b.t()
                # PEFT's weights become views: same values, memory held once.
                a.data = self.a[:, block].t()
                b.data = self.b[block, :].t()
        # (x @ a) and (h @ b) as linear layers compute them: weights (width, in) and (out, width), packed.
        self.packed = (packed_weight(self.a.t()), packed_weight(self.b.t())) if packed else None
        self._mask: Any = None
        layer.register_forward_hook(self._hook)

    def select(self, adapters: Sequence[str | None] | None) -> None:
        if adapters is None:
            self._mask = None
            return
        import torch

        mask = torch.zeros(len(adapters), self.a.shape[1], dtype=self.a.dtype)
        for row, name in enumerate(adapters):
            if name in self.scaling:
                k = self.names.index(name)
                mask[row, k * self.rank : (k + 1) * self.rank] = self.scaling[name]
        self._mask = mask.to(self.a.device)

    def _hook(self, module: Any, args: tuple[Any, ...], output: Any) -> Any:
        from .packed_linear import packed_linear

        # Where the base layer computed x @ a in its own product (packed with it), its output is a view.
        base = module.get_base_layer()
        side = getattr(base, "side_output", None)
        if side is not None:
            base.side_output = None
        if self._mask is None:
            return None if side is None else output.contiguous()
        x = args[0]
        mask = self._mask
        if x.shape[0] != mask.shape[0]:
            raise RuntimeError(f"a batch of {x.shape[0]} rows where {mask.shape[0]} were selected")
        if x.dim() == 3:
            mask = mask[:, None, :]
        x = x.to(self.a.dtype)
        if self.packed is not None:
            pa, pb = self.packed
            down = side if side is not None else packed_linear(x, pa, None, self.a.shape[1])
            delta = packed_linear(down * mask, pb, None, self.b.shape[1])
        else:
            delta = ((x @ self.a) * mask) @ self.b
        return output + delta.to(output.dtype)
