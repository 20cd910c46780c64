"""A KV cache kept in a narrower float type than the model computes in, allocated once per generation.

On a CPU the model runs in float32 and every row's keys and values grow by one token per step. Here each layer
holds one bfloat16 buffer sized for the whole generation (half the bytes, and no step-by-step regrowth whose
freed copies the allocator keeps), and its states are widened back to the compute type only while that layer
attends, one layer at a time. The model's arithmetic is unchanged apart from the rounding of the stored states
(bfloat16 keeps float32's range; GPUs commonly run whole models in it).
"""

from __future__ import annotations

from typing import Any


def narrow_cache(storage_dtype: Any, max_length: int) -> Any:
    """A fresh transformers Cache whose layers store up to `max_length` positions as `storage_dtype`
    (it grows past that if it must)."""
    import torch
    from transformers.cache_utils import Cache, DynamicLayer

    class NarrowLayer(DynamicLayer):
        length = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.keys = key_states.new_empty(
                (*key_states.shape[:2], max_length, key_states.shape[3]), dtype=storage_dtype
            )
            self.values = value_states.new_empty(
                (*value_states.shape[:2], max_length, value_states.shape[3]), dtype=storage_dtype
            )
            self.length = 0
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.keys.shape[-2]:
                room = end - self.keys.shape[-2]
                self.keys = torch.cat(
                    [self.keys, self.keys.new_empty((*self.keys.shape[:2], room, self.keys.shape[3]))], 2
                )
                self.values = torch.cat(
                    [self.values, self.values.new_empty((*self.values.shape[:2], room, self.values.shape[3]))], 2
                )
            self.keys[:, :, self.length : end] = key_states
            self.values[:, :, self.length : end] = value_states
            self.length = end
            return self.keys[:, :, :end].to(self.dtype), self.values[:, :, :end].to(self.dtype)

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0 and self.is_initialized:
                self.length = max(0, self.length + tokens_to_remove)

    return Cache(layer_class_to_replicate=NarrowLayer)


def cache_keyword(model: Any) -> str:
    """The `generate` keyword that takes a Cache: `cache` since transformers renamed it (the old
    `past_key_values` still works there, with a FutureWarning on stderr)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
