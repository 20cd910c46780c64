"""`ensemble pretrain-base`: a byte-level BPE tokenizer and a small GPT-2 trained from scratch on the corpus,
so the whole pipeline runs offline without any downloaded weights."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config.project import ProjectConfig
from ..core.artifacts import write_json_atomic
from ..core.errors import ConfigError, CorpusError
from ..core.locks import work_lock
from ..core.progress import NullProgress, Progress
from .base import set_causal_lm_loss
from .config import TrainParams
from .dataset import (
    CONDITION_TOKENS,
    DataPassage,
    LMDataset,
    make_sequences,
    pack,
    split_train_val,
    text_hash,
)
from .runtime import quiet_hf, resolve_precision

EOS = "<|endoftext|>"
PAD = "<pad>"


@dataclass(frozen=True)
class PretrainPreset:
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    block_size: int
    epochs: float
    learning_rate: float
    micro_batch_size: int
    warmup_steps: int
    max_steps: int | None = None
    # Training tokens at most (steps × micro batch × block): a larger corpus is sampled, a smaller one gets
    # fewer epochs, so the time a preset takes is bounded whatever the corpus.
    max_train_tokens: int | None = None


PRESETS: dict[str, PretrainPreset] = {
    # ≈1.2M parameters, at most 600k training tokens (~600 steps): a minute or two on two CPU cores on any
    # corpus; the ~40k-character example (~19k tokens) still gets its 24 epochs.
    "tiny": PretrainPreset(2000, 2, 128, 4, 256, 128, 24, 3e-3, 8, 20, max_train_tokens=600_000),
    # ≈15M parameters, up to 50M training tokens: for a real corpus and a GPU (or patience).
    "small": PretrainPreset(16000, 6, 384, 6, 512, 256, 10, 6e-4, 16, 200, max_train_tokens=50_000_000),
    # For test fixtures: seconds.
    "test": PretrainPreset(600, 2, 64, 2, 128, 64, 1, 5e-3, 8, 2),
}

CHARS_PER_TOKEN_CAP = 6  # more characters per token than byte-level BPE makes: a safe pre-tokenization cap
VAL_SHARE = 0.05


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """Byte-level BPE (any text encodes, nothing unknown) with EOS, pad and condition tokens reserved."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS, PAD, *CONDITION_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(CONDITION_TOKENS),
        model_max_length=None,
    )


def _paragraphs(texts: Sequence[str]) -> list[DataPassage]:
    paras = [p.strip() for t in texts for p in t.split("\n") if p.strip()]
    seen: dict[str, DataPassage] = {}
    for i, p in enumerate(paras):
        h = text_hash(p)
        seen.setdefault(h, DataPassage(f"p{i}", p, h))
    return list(seen.values())


def sample_paragraphs(paras: Sequence[DataPassage], sizes: Sequence[int], budget: int) -> list[DataPassage]:
    """The paragraphs chosen by hash order (not corpus order, so every part of the corpus is represented)
    until their `sizes` reach `budget`, at least one; returned in corpus order."""
    if sum(sizes) <= budget:
        return list(paras)
    chosen: set[int] = set()
    total = 0
    for i in sorted(range(len(paras)), key=lambda i: paras[i].sha256):
        if chosen and total + sizes[i] > budget:
            continue
        chosen.add(i)
        total += sizes[i]
    return [p for i, p in enumerate(paras) if i in chosen]


def planned_steps(preset: PretrainPreset, n_samples: int) -> int | None:
    """`max_steps` for the run: the preset's epochs over `n_samples` blocks, bounded by its token budget and
    its own max_steps; None when the epochs alone decide."""
    per_step = preset.micro_batch_size * preset.block_size
    epochs_steps = math.ceil(preset.epochs * math.ceil(n_samples / preset.micro_batch_size))
    bounds = [b for b in (preset.max_steps,) if b is not None]
    if preset.max_train_tokens is not None:
        bounds.append(max(1, preset.max_train_tokens // per_step))
    bound = min(bounds, default=None)
    return bound if bound is not None and bound < epochs_steps else preset.max_steps


def corpus_seen(
    used: Sequence[DataPassage], total: Sequence[DataPassage], train_tokens: int, tokens_seen: int
) -> dict[str, Any]:
    """How much of the corpus's training paragraphs the model was trained on, and how often."""
    used_chars, total_chars = sum(len(p.text) for p in used), sum(len(p.text) for p in total)
    return {
        "paragraphs": len(used),
        "paragraphs_total": len(total),
        "chars": used_chars,
        "chars_total": total_chars,
        "fraction": round(used_chars / max(total_chars, 1), 4),
        "passes": round(tokens_seen / max(train_tokens, 1), 2),
    }


def seen_text(seen: dict[str, Any]) -> str:
    """`trained on 35% of the corpus (120 of 342 paragraphs), 1.0 passes`."""
    return (
        f"trained on {100 * seen['fraction']:.0f}% of the corpus ({seen['paragraphs']:,} of "
        f"{seen['paragraphs_total']:,} training paragraphs), {seen['passes']:g} passes"
    )


def pretrain_on_texts(
    texts: Sequence[str],
    out_dir: str | Path,
    preset: PretrainPreset,
    *,
    seed: int = 0,
    precision: str = "auto",
    progress: Progress | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train tokenizer + GPT-2 on `texts` and save both (safetensors) into `out_dir`, manifest.json last.

    Validation: a disjoint hash-chosen ~5% of the paragraphs; perplexity before and after is reported."""
    with quiet_hf():
        return _pretrain(texts, Path(out_dir), preset, seed, precision, progress or NullProgress(), extra_manifest)


def _pretrain(
    texts: Sequence[str],
    out_dir: Path,
    preset: PretrainPreset,
    seed: int,
    precision: str,
    progress: Progress,
    extra_manifest: dict[str, Any] | None,
) -> dict[str, Any]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, set_seed

    from .trainer import perplexity, run_training

    t0 = time.perf_counter()
    paras = _paragraphs(texts)
    if len(paras) < 2:
        raise CorpusError("the corpus has too little text to pretrain a model (need at least two paragraphs)")
    train_total, all_val = split_train_val(paras, VAL_SHARE, 1)
    all_train = train_total
    budget = preset.max_train_tokens
    if budget is not None:  # bounds the tokenizer's training and the tokenization on a huge corpus
        chars = budget * CHARS_PER_TOKEN_CAP
        all_train = sample_paragraphs(all_train, [len(p.text) for p in all_train], chars)
        all_val = sample_paragraphs(all_val, [len(p.text) for p in all_val], max(1, int(chars * VAL_SHARE)))
    tokenizer = train_tokenizer([p.text for p in all_train], preset.vocab_size)
    set_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=preset.n_positions,
        n_embd=preset.n_embd,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    set_causal_lm_loss(model)

    def token_ids(ps: list[DataPassage]) -> list[list[int]]:
        return tokenizer([p.text for p in ps], add_special_tokens=False)["input_ids"]

    def samples(ids: list[list[int]]) -> LMDataset:
        return LMDataset(pack(make_sequences(ids, tokenizer.eos_token_id), preset.block_size))

    train_ids = token_ids(all_train)
    train_p = all_train
    if budget is not None:
        train_p = sample_paragraphs(all_train, [len(i) + 1 for i in train_ids], budget)
        kept = {p.id for p in train_p}
        train_ids = [ids for p, ids in zip(all_train, train_ids, strict=True) if p.id in kept]
    val_p = all_val
    train_ds, val_ds = samples(train_ids), samples(token_ids(val_p))
    params = TrainParams(
        epochs=preset.epochs,
        max_steps=planned_steps(preset, len(train_ds)),
        learning_rate=preset.learning_rate,
        micro_batch_size=preset.micro_batch_size,
        grad_accum=1,
        block_size=preset.block_size,
        warmup_steps=preset.warmup_steps,
        lr_schedule="cosine",
        weight_decay=0.01,
        precision=precision,  # type: ignore[arg-type]
        gradient_checkpointing=False,
        seed=seed,
    )
    prec = resolve_precision(params.precision)
    model.to(prec.device)
    ppl_before = perplexity(model, val_ds, tokenizer.pad_token_id, precision=prec)
    scratch = out_dir.parent / f".{out_dir.name}.run-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        trainer, outcome = run_training(
            model,
            tokenizer,
            train_ds,
            None,
            params,
            prec,
            scratch / "trainer",
            task="pretrain-base",
            progress=progress,
            save_checkpoints=False,
        )
        model = trainer.model
        seen = corpus_seen(train_p, train_total, train_ds.n_tokens, outcome.tokens_seen)
        ppl_after = perplexity(model, val_ds, tokenizer.pad_token_id, precision=prec)
        out = scratch / "model"
        model.to("cpu").to(torch.float32)
        model.save_pretrained(out)  # safetensors
        tokenizer.save_pretrained(out)
        manifest = {
            "format": "ensemble-base/1",
            "architecture": "gpt2",
            "preset": asdict(preset),
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "special_tokens": {"eos": EOS, "pad": PAD, "condition": list(CONDITION_TOKENS)},
            "data": {
                "paragraphs_train": len(train_p),
                "paragraphs_val": len(val_p),
                "chars": sum(len(t) for t in texts),
                "tokens_train": train_ds.n_tokens,
                "tokens_val": val_ds.n_tokens,
                "max_train_tokens": preset.max_train_tokens,
                "corpus_seen": seen,
            },
            "val_perplexity_before": ppl_before,
            "val_perplexity_after": ppl_after,
            "steps": outcome.global_step,
            "tokens_seen": outcome.tokens_seen,
            "train_seconds": round(outcome.train_seconds, 2),
            "tokens_per_s": round(outcome.tokens_this_run / max(outcome.train_seconds, 1e-9), 1),
            "peak_memory_bytes": outcome.peak_memory_bytes,
            "peak_memory_kind": outcome.peak_memory_kind,
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "seed": seed,
            **(extra_manifest or {}),
        }
        write_json_atomic(out / "manifest.json", manifest)
        _swap_in(out, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _swap_in(new: Path, target: Path) -> None:
    """Replace `target` by `new` so a reader sees the old model or the new one, never half of one."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def pretrain_base(
    cfg: ProjectConfig, preset: str = "tiny", progress: Progress | None = None, *, force: bool = False
) -> Path:
    """Train the offline base model into `<work_dir>/base` (kept if it exists, unless `force`)."""
    from ..corpus.load import read_documents

    progress = progress or NullProgress()
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}", key="preset")
    out = cfg.work_path / "base"
    if cfg.base_model is not None:
        progress.log(
            f"note: ensemble.yaml sets base_model: {cfg.base_model}; the model trained here is used "
            "only when base_model is unset"
        )
    with work_lock(cfg.work_path / "training.lock"):
        if (out / "manifest.json").is_file() and not force:
            progress.log(f"base model already trained at {out}; pass --force to train it again")
            return out
        progress.log("reading the corpus")
        texts = [d.text for d in read_documents(cfg)]
        if not texts:
            raise CorpusError("the corpus is empty; check `corpus:` in ensemble.yaml", path=cfg.source, key="corpus")
        manifest = pretrain_on_texts(texts, out, PRESETS[preset], progress=progress, extra_manifest={"name": preset})
        progress.log(
            f"base model: {manifest['parameters']:,} parameters, validation perplexity "
            f"{manifest['val_perplexity_before']:.1f} → {manifest['val_perplexity_after']:.1f} "
            f"({manifest['wall_seconds']:.0f} s); {seen_text(manifest['data']['corpus_seen'])}"
        )
    return out
