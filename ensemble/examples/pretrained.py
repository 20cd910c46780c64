"""`ensemble init DIR --base-model M`: the example project set up for a pretrained base instead of the tiny
offline one. The tiny model learns the corpus from scratch and wants a high learning rate and many passes; a
pretrained base already writes the language and only needs to shift towards each topic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import regex as re
import yaml

if TYPE_CHECKING:
    from ..config.project import ProjectConfig

# key: (value, comment). Each differs from the offline example (tiny base) for the reason given.
PRETRAINED_DEFAULTS: dict[str, tuple[object, str]] = {
    "top_k": (50, "passages per query: a pretrained base needs more text, and only query matches count"),
    "epochs": (3, "a pretrained base adapts in 2-3 passes; the best validation is kept, patience stops early"),
    "learning_rate": (1.0e-3, "LoRA on a pretrained base and a few hundred passages; the tiny base's 0.01 wrecks one"),
    "micro_batch_size": (1, "a real base's activations: keep the micro-batch small ..."),
    "grad_accum": (8, "... and accumulate: 8 samples per optimizer step"),
    "gradient_checkpointing": (True, "recompute activations: a real base fits in less memory"),
}
BLOCK_SIZES = (128, 256, 512, 1024)


def block_size_for(passage_tokens: Sequence[int], max_positions: int | None) -> int:
    """The smallest block holding two long passages (90th percentile) whole, within the model's positions."""
    if not passage_tokens:
        return 256
    p90 = sorted(passage_tokens)[int(0.9 * (len(passage_tokens) - 1))]
    limit = max_positions or BLOCK_SIZES[-1]
    fitting = [b for b in BLOCK_SIZES if b <= limit] or [limit]
    return next((b for b in fitting if b >= 2 * p90), fitting[-1])


def load_tokenize(base_model: str) -> tuple[Callable[[list[str]], list[int]], int | None] | None:
    """(texts → token counts, max positions) of a base found locally; None when it cannot be read offline."""
    try:
        from transformers import AutoConfig, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
        config = AutoConfig.from_pretrained(base_model, local_files_only=True)
    except Exception:  # not downloaded yet, not a model, no network: fall back to a character estimate
        return None
    config = getattr(config, "text_config", None) or config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    return count, positions


def corpus_block_size(cfg: ProjectConfig, base_model: str) -> tuple[int, str]:
    """block_size for `base_model` on the project's corpus, cut into passages as build-index cuts it, and how it
    was measured."""
    from ..corpus.passages import passage_texts

    texts = passage_texts(cfg)
    found = load_tokenize(base_model)
    if found is None:
        counts = [len(t) for t in texts]
        return block_size_for(counts, None), "its tokenizer is not on this machine: one token per character assumed"
    tokenize, positions = found
    counts = sorted(tokenize(texts))
    p90 = counts[int(0.9 * (len(counts) - 1))] if counts else 0
    return block_size_for(counts, positions), f"{len(texts)} passages of the corpus, 90th percentile {p90} tokens"


def pretrained_settings(cfg: ProjectConfig, base_model: str) -> dict[str, tuple[object, str]]:
    """The topics.yaml defaults for `base_model` on this project's corpus."""
    block, how = corpus_block_size(cfg, base_model)
    return {**PRETRAINED_DEFAULTS, "block_size": (block, f"two long passages whole ({how})")}


def _yaml_scalar(value: object) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def rewrite_defaults(text: str, settings: dict[str, tuple[object, str]]) -> str:
    """topics.yaml with these keys of its `defaults:` block set (comments replaced), everything else kept."""
    lines = text.splitlines(keepends=True)
    out, in_defaults = [], False
    for line in lines:
        if re.match(r"^\S", line):
            in_defaults = line.startswith("defaults:")
        m = re.match(r"^  (\w+):", line) if in_defaults else None
        if m and m.group(1) in settings:
            value, comment = settings[m.group(1)]
            line = f"  {m.group(1)}: {_yaml_scalar(value)}  # {comment}\n"
        out.append(line)
    return "".join(out)


def set_base_model(text: str, base_model: str) -> str:
    """ensemble.yaml with `base_model` set, in place of its commented-out example."""
    line = f"base_model: {_yaml_scalar(base_model)}\n"
    new, n = re.subn(r"(?m)^# base_model: .*\n", line, text, count=1)
    return new if n else text.rstrip("\n") + "\n" + line
