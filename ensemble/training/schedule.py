"""Partial fine-tuning plans (the ruGPT-3 recipe): how many blocks stay frozen, when the others open up, and
the learning rate of each block. Pure arithmetic on block indices."""

from __future__ import annotations

import math


def default_frozen(n_layers: int) -> int:
    """Freeze the lower half (the contest recipe froze 12 of 24 blocks)."""
    return n_layers // 2


def unfreeze_plan(n_layers: int, frozen: int, epochs: int) -> list[int]:
    """For each epoch, the index of the lowest block that trains. Gradual unfreezing opens the trainable
    blocks top-down in equal groups, one more group per epoch, all of them by the last epoch."""
    epochs = max(1, epochs)
    trainable = n_layers - frozen
    if trainable <= 0:
        return [n_layers] * epochs
    stages = min(epochs, trainable)
    return [n_layers - math.ceil(min(stages, e + 1) * trainable / stages) for e in range(epochs)]


def lowest_trainable(n_layers: int, frozen: int, step: int, total_steps: int, epochs: int) -> int:
    """The lowest block that trains at optimizer step `step` (0-based) of a run that really takes `total_steps`
    steps over `epochs` epochs (`max_steps` may cut it short): the plan's per-epoch stages spread evenly over
    those steps, so every trainable block opens before the run ends."""
    epochs = max(1, epochs)
    stage = min(epochs - 1, max(0, step) * epochs // max(1, total_steps))
    return unfreeze_plan(n_layers, frozen, epochs)[stage]


def block_lr(base_lr: float, n_layers: int, block: int, decay: float) -> float:
    """Discriminative learning rates: the top block trains at `base_lr`, each block below at `decay` times the
    one above. Layers above the blocks (final norm, head) use `base_lr`."""
    if block >= n_layers:
        return base_lr
    return base_lr * decay ** (n_layers - 1 - block)
