"""A KV cache kept in a narrower float type than the model computes in, allocated once per generation.

On a CPU the model runs in float32 and every row's keys and values grow by one token per step. Here each layer
holds one bfloat16 buffer sized for the whole generation (half the bytes, and no step-by-step regrowth whose
freed copies the allocator keeps), and its states are widened back to the compute type only while that layer
attends, one layer at a time. The model's arithmetic is unchanged apart from the rounding of the stored states
(bfloat16 keeps float32's range; GPUs commonly run whole models in it).

Rows that continue the same prompt (a section's candidates) read that prompt's states from one copy, kept
already widened (the same rounded values; a prompt's few positions once per section): since every step widens
the states into a fresh float32 tensor anyway, that tensor is assembled from the shared prompt part and the
row's own positions at no extra memory. With `split` (the host's attention on a CPU, row_attention.py) not even
that: attention gets only the rows' own positions, kept in the compute type from then on, and reads the prompt's
from its one copy.
"""

from __future__ import annotations

from typing import Any


def narrow_cache(storage_dtype: Any, max_length: int, *, split: bool = False) -> Any:
    """A fresh transformers Cache whose layers store up to `max_length` positions as `storage_dtype`
    (it grows past that if it must).

    `batch_select_indices(rows)` gives row i the states of row `rows[i]`: right after a prefill of distinct
    prompts (the candidates sharing one), and whenever rows leave the batch. Where the states are widened for
    attention anyway (storage narrower than compute), the positions held at the first such call are then kept
    once and only the positions after them per row; otherwise they are copied. `split`: from then on a layer's
    `update` returns only the positions after them (stored in the compute type), and the cache's
    `shared_prompt(layer)` the rest, which attention (row_attention) must read at every step (a step that did
    not is an error at the next).
    """
    import torch
    from transformers.cache_utils import Cache, DynamicLayer

    from .row_attention import SharedPrompt

    def buffer(like: torch.Tensor, rows: int, positions: int, dtype: Any = None) -> torch.Tensor:
        return like.new_empty((rows, like.shape[1], positions, like.shape[3]), dtype=dtype or like.dtype)

    class NarrowLayer(DynamicLayer):
        length = 0  # positions held for every row
        shared = 0  # of which the first `shared` are read from `prompt_keys/values[owner]`
        owner: torch.Tensor | None = None
        runs: list[tuple[int, int, int]] = []
        prompt: SharedPrompt | None = None
        unread = False  # split: attention did not read the prompt part of the last update
        live: list[int] | None = None  # the rows an update holds states for (None: all), of `rows` rows
        rows = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            rows = self.rows or key_states.shape[0]
            self.keys = buffer(key_states, rows, max_length, storage_dtype)
            self.values = buffer(value_states, rows, max_length, storage_dtype)
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            at = self.length - self.shared
            end = at + key_states.shape[-2]
            if end > self.keys.shape[-2]:
                room = end - self.keys.shape[-2]
                self.keys = torch.cat([self.keys, buffer(self.keys, self.keys.shape[0], room)], 2)
                self.values = torch.cat([self.values, buffer(self.values, self.values.shape[0], room)], 2)
            if self.live is None:
                self.keys[:, :, at:end] = key_states
                self.values[:, :, at:end] = value_states
            else:  # a prefill chunk of some rows: the others are padding there, zeros never attended
                self.keys[:, :, at:end] = 0
                self.values[:, :, at:end] = 0
                self.keys[self.live, :, at:end] = key_states.to(self.keys.dtype)
                self.values[self.live, :, at:end] = value_states.to(self.values.dtype)
            self.length += key_states.shape[-2]
            if self.owner is not None and not split:
                return self._widen(self.prompt_keys, self.keys, end), self._widen(self.prompt_values, self.values, end)
            if self.owner is not None:  # split: attention reads the prompt's part from `prompt`
                self.check_read()
                self.unread = True
            keys, values = self.keys[:, :, :end], self.values[:, :, :end]
            if self.live is not None:
                keys, values = keys[self.live], values[self.live]
            return keys.to(self.dtype), values.to(self.dtype)

        def _widen(self, prompt: torch.Tensor, own: torch.Tensor, end: int) -> torch.Tensor:
            out = own.new_empty((own.shape[0], own.shape[1], self.length, own.shape[3]), dtype=self.dtype)
            for first, last, owner in self.runs:
                out[first:last, :, : self.shared] = prompt[owner : owner + 1]
            out[:, :, self.shared :] = own[:, :, :end]
            return out

        def _set_owner(self, owner: torch.Tensor) -> None:
            self.owner, self.runs = owner, runs(owner.tolist())
            if split:
                self.prompt = SharedPrompt(self.prompt_keys, self.prompt_values, owner.tolist())

        def read_prompt(self) -> SharedPrompt | None:
            self.unread = False
            return self.prompt

        def check_read(self) -> None:
            if self.unread:
                raise RuntimeError(
                    "this model's attention does not go through transformers' attention interface, so it never "
                    "read the prompt its KV cache left out: report it with the model's type (its config.json)"
                )

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if not self.is_initialized or self.length == 0:
                return
            if storage_dtype == self.dtype or self.owner is not None:
                super().batch_select_indices(indices)
                if self.owner is not None:  # rows already read a shared prompt: they keep reading theirs
                    self._set_owner(self.owner[indices])
                return
            # Widened once: the values every step would widen again, now only copied, once per run of rows.
            self.prompt_keys = self.keys[:, :, : self.length].to(self.dtype)
            self.prompt_values = self.values[:, :, : self.length].to(self.dtype)
            self.shared = self.length
            self._set_owner(indices)
            # Split, each row's own positions are kept in the compute type too: attention then reads them in
            # place, where widening them at every step cost ~4 % of a step (124M shape), for ~50 MB more.
            own = self.dtype if split else storage_dtype
            self.keys = buffer(self.keys, len(indices), max(1, max_length - self.length), own)
            self.values = buffer(self.values, len(indices), max(1, max_length - self.length), own)

        def reorder_cache(self, beam_idx: torch.Tensor) -> None:
            super().reorder_cache(beam_idx)
            if self.owner is not None:
                self._set_owner(self.owner[beam_idx.to(self.owner.device)])

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0 and self.is_initialized:
                self.length = max(self.shared, self.length + tokens_to_remove)

    class NarrowCache(Cache):
        live: list[int] | None = None
        rows = 0

        def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> Any:
            if split and 0 < layer_idx <= len(self.layers):
                self.layers[layer_idx - 1].check_read()  # the layer before, in this same pass
            while len(self.layers) <= layer_idx:
                self.layers.append(NarrowLayer())
            self.layers[layer_idx].live, self.layers[layer_idx].rows = self.live, self.rows
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)

        def only(self, live: list[int] | None, rows: int) -> None:
            """The following passes (a prefill's) hold rows `live` of the cache's `rows` rows (None: every row);
            the others keep zeros at those positions, as padding that is never attended."""
            self.live, self.rows = live, rows

        def shared_prompt(self, layer: int) -> SharedPrompt | None:
            """Layer `layer`'s shared prompt where `update` left it out (split), else None."""
            return self.layers[layer].read_prompt() if split and layer < len(self.layers) else None

    return NarrowCache(layer_class_to_replicate=NarrowLayer)


def runs(owners: list[int]) -> list[tuple[int, int, int]]:
    """(first row, row after the last, owner) for each run of consecutive rows with the same owner: a section's
    candidates sit side by side, so a step copies each shared prompt once per section, not row by row."""
    out: list[tuple[int, int, int]] = []
    for row, owner in enumerate(owners):
        if out and out[-1][2] == owner:
            out[-1] = (out[-1][0], row + 1, owner)
        else:
            out.append((row, row + 1, owner))
    return out


def forward_parameters(model: Any) -> frozenset[str]:
    """The keyword arguments the (PEFT-wrapped) model's own forward takes."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return frozenset(inspect.signature(base.forward).parameters)


def cache_keyword(forward_takes: frozenset[str]) -> str:
    """The `generate` keyword that takes a Cache, given `forward_parameters(model)`: `cache` since transformers
    renamed it (the old `past_key_values` still works there, with a FutureWarning on stderr)."""
    return "cache" if "cache" in forward_takes else "past_key_values"
