"""The token loop of one batch: each row's next id chosen by a sampler, and a row that ends leaves the batch.

transformers' `generate` keeps a row that has ended in the batch until the last one ends (its padding costs
a full row of work every step) and takes the choice back as scores over the whole vocabulary (on Gemma 3,
262k numbers per row and step). Here the sampler returns ids, and a row that chose the end-of-text token is
dropped: from the running ids and mask, and through `leave` from everything else that holds it per row (the
KV cache, the adapter selection). A row's own text never depends on the others, so which rows are left in the
batch changes nothing but the speed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# forward(last ids (b, 1), attention mask (b, positions), live rows) -> the last position's scores (b, vocab)
Forward = Callable[[Any, Any, Sequence[int]], Any]
# choose(ids so far (b, positions), scores (b, vocab), live rows) -> the next id of each live row
Choose = Callable[[Any, Any, Sequence[int]], list[int]]
# leave(kept): keep only these positions of the current batch, in this order
Leave = Callable[[Any], None]


def decode(
    forward: Forward,
    choose: Choose,
    leave: Leave,
    input_ids: Any,
    mask: Any,
    max_new: int,
    eos_id: int | None,
) -> list[list[int]]:
    """Up to `max_new` new ids for each row of `input_ids` (left-padded; the states of all but its last
    position already in the model's cache), a row ending with `eos_id` once it chose it."""
    import torch

    rows: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    live = list(range(input_ids.shape[0]))
    ids, step_ids = input_ids, input_ids[:, -1:]
    for step in range(max_new):
        chosen = choose(ids, forward(step_ids, mask, live), live)
        for r, token in zip(live, chosen, strict=True):
            rows[r].append(token)
        kept = [j for j, token in enumerate(chosen) if token != eos_id]
        if step == max_new - 1 or not kept:
            break
        step_ids = torch.tensor(chosen, device=ids.device)[:, None]
        ids = torch.cat([ids, step_ids], dim=1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        if len(kept) < len(live):
            index = torch.tensor(kept, device=ids.device)
            ids, mask, step_ids = ids[index], mask[index], step_ids[index]
            leave(index)
            live = [live[j] for j in kept]
    return rows
