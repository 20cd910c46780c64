"""Attention on a CPU that reads a section's prompt once for all its candidates.

A section's candidates continue one prompt. The KV cache (kv_cache.py, `split`) keeps that prompt's keys and values
once and hands attention only each row's own positions; here the candidates' queries are stacked into one matrix
per prompt and multiplied with the prompt's states in place, then with their own. torch's fused attention needs
every row's states in one tensor, so each step used to copy (and widen from bfloat16) the prompt's states into
every row, for every layer: on the GPT-2-124M shape that copy and the fused kernel took ~2 ms per layer, this
~0.7 (21 rows of 7 prompts, 64 + 32 positions; `benchmarks/compose.py` for whole rounds).

A row's numbers must not depend on the rows beside it. A matrix product's row is computed alike however many rows
the product has only from 4 rows up (1, and 2-3, take other kernels: measured), so a prompt's matrix always has
SLOTS query rows per query head (empty slots are zeros), a lone row's as well: a lone row goes the same way as a
candidate, which is why the host splits every prompt off, shared or not. Padding keeps its alignment (host.py,
PAD_MULTIPLE): a prompt's positions are a multiple of 16, so a row's own positions start at the same offset.

Registered with transformers' attention interface under `NAME` (with `sdpa`'s boolean masks); the host selects it on
a CPU and passes its cache as the `row_cache` keyword. What this does not handle (dropout, attention sinks, a
position bias, gradients, a GPU) goes to transformers' `sdpa`.
"""

from __future__ import annotations

from typing import Any

NAME = "ensemble_rows"
# Query rows of a prompt's matrix: a section's candidates side by side, padded with zeros (more: further matrices).
SLOTS = 4
# A position a query may not attend gets this score, not -inf: a padding query that may attend nothing then gets a
# finite average instead of NaN, which the masked positions' zero weights would carry into every row.
MASKED = -1e30


def register() -> None:
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(NAME, row_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_row_attention(model: Any) -> bool:
    """Switch `model` (before PEFT wraps it) to this attention; False where it cannot be: its forward must hand
    extra keywords (`row_cache`) down to attention."""
    import inspect

    takes = inspect.signature(model.forward).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes):
        return False
    register()
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, AttributeError, NotImplementedError):
        return False
    return True


def row_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    softcap: float | None = None,
    row_cache: Any = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-interface signature: query (rows, heads, q, dim), key and value (rows, kv heads,
    positions, dim), the boolean mask over the prompt's and the row's positions; returns (rows, q, heads, dim)."""
    import torch

    unusual = dropout or kwargs.get("s_aux") is not None or kwargs.get("position_bias") is not None
    if unusual or query.device.type != "cpu" or (torch.is_grad_enabled() and query.requires_grad):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, softcap=softcap, **kwargs
        )
    rows, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # The query heads that read one key head, side by side (transformers' repeat_kv order): one matrix per key head.
    q = query.reshape(rows, kv_heads, group * q_len, dim)
    prompt = row_cache.shared_prompt(module.layer_idx) if row_cache is not None else None
    own = torch.matmul(q, key.transpose(-1, -2))
    scores = own if prompt is None else torch.cat([prompt.scores(q), own], -1)
    scores = scores * (scaling if scaling is not None else dim**-0.5)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    length = scores.shape[-1]
    scores = scores.view(rows, kv_heads, group, q_len, length)
    mask = attention_mask
    if mask is None and q_len > 1:
        mask = torch.ones(q_len, length, dtype=torch.bool, device=query.device).tril(length - q_len)
    if mask is not None:
        mask = mask[..., :length].reshape(-1, 1, 1, q_len, length)
        scores = scores.masked_fill(~mask, MASKED) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, -1).view(rows, kv_heads, group * q_len, length)
    if prompt is None:
        out = torch.matmul(probs, value)
    else:
        before = length - key.shape[2]
        out = torch.matmul(probs[..., before:], value) + prompt.weighted(probs[..., :before])
    out = out.view(rows, kv_heads, group, q_len, dim).reshape(rows, heads, q_len, dim)
    return out.transpose(1, 2).contiguous(), None


class SharedPrompt:
    """One layer's prompt states, each prompt's once (`keys`, `values`: prompts x kv heads x positions x dim), and
    the prompt each row of the batch continues (`owner[row]`)."""

    def __init__(self, keys: Any, values: Any, owner: list[int]) -> None:
        import torch

        blocks: list[tuple[int, list[int]]] = []  # (prompt, up to SLOTS rows)
        for p in range(keys.shape[0]):
            mine = [r for r, o in enumerate(owner) if o == p]
            blocks += [(p, mine[i : i + SLOTS]) for i in range(0, len(mine), SLOTS)]
        dev = keys.device
        prompts = [p for p, _ in blocks]
        if prompts != list(range(keys.shape[0])):  # a prompt with more than SLOTS rows, or none
            index = torch.tensor(prompts, device=dev)
            keys, values = keys[index], values[index]
        self.keys, self.values = keys, values
        empty = len(owner)  # the zero row appended below
        self.slots = torch.tensor([b[i] if i < len(b) else empty for _, b in blocks for i in range(SLOTS)], device=dev)
        where = {int(r): i for i, r in enumerate(self.slots.tolist()) if r != empty}
        self.back = torch.tensor([where[r] for r in range(len(owner))], device=dev)

    def _stacked(self, x: Any) -> Any:
        """(rows, heads, m, n) -> (blocks, heads, SLOTS * m, n): each block's rows as one matrix per head."""
        import torch

        _, heads, m, n = x.shape
        padded = torch.cat([x, x.new_zeros((1, heads, m, n))])[self.slots]
        return padded.view(-1, SLOTS, heads, m, n).transpose(1, 2).reshape(-1, heads, SLOTS * m, n)

    def _unstacked(self, x: Any) -> Any:
        blocks, heads, sm, n = x.shape
        m = sm // SLOTS
        return x.view(blocks, heads, SLOTS, m, n).transpose(1, 2).reshape(blocks * SLOTS, heads, m, n)[self.back]

    def scores(self, q: Any) -> Any:
        """Each row's queries (rows, kv heads, m, dim) times its prompt's keys: (rows, kv heads, m, positions)."""
        import torch

        return self._unstacked(torch.matmul(self._stacked(q), self.keys.transpose(-1, -2)))

    def weighted(self, probs: Any) -> Any:
        """Each row's weights over its prompt's positions (rows, kv heads, m, positions) times their values."""
        import torch

        return self._unstacked(torch.matmul(self._stacked(probs), self.values))
