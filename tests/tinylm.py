"""A tiny causal LM for tests: byte-level BPE + 2-layer GPT-2 trained for seconds, saved like a real base.

    from tinylm import build_tiny_base   # tests/ is on sys.path under pytest
    base = build_tiny_base(tmp_path / "base", texts, steps=40)   # then base_model: <base> in ensemble.yaml

On a shared machine call torch.set_num_threads(1) first: a contended second thread is ~10x slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path


def build_tiny_base(directory: str | Path, texts: Sequence[str], steps: int = 40, *, seed: int = 0) -> Path:
    """Train tokenizer + model on `texts` for `steps` optimizer steps; returns the saved model directory
    (config.json, model.safetensors, tokenizer files, manifest.json). The tokenizer has `<pad>`,
    `<|endoftext|>` and the condition tokens `[TOPIC]`/`[TEXT]`."""
    from ensemble.training.pretrain import PRESETS, pretrain_on_texts

    directory = Path(directory)
    preset = replace(PRESETS["test"], max_steps=steps, epochs=1000)
    pretrain_on_texts(list(texts), directory, preset, seed=seed, precision="fp32")
    return directory
