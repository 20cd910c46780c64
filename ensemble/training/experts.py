"""`ensemble train-experts`: for each topic, retrieve its passages, build its dataset, train its adapter."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config.project import ProjectConfig
from ..core.artifacts import write_json_atomic
from ..core.errors import ConfigError, EnsembleError
from ..core.locks import work_lock
from ..core.progress import NullProgress, Progress
from .base import base_fingerprint, base_model_type, check_base, load_base_model
from .config import TopicsFile, TopicSpec, TrainParams, load_topics
from .dataset import (
    CONDITION_FORMAT,
    CONDITION_TOKENS,
    SAMPLE_FORMAT,
    DataPassage,
    LMDataset,
    make_sequences,
    pack,
    per_passage,
    start_ids,
)
from .dtypes import dtype_name, hold_dtypes, load_dtype, parameter_dtypes
from .registry import MANIFEST_FORMAT, ExpertManifest, expert_dir, read_manifest
from .runtime import Precision, barrier, dist_rank, quiet_hf, resolve_precision
from .topic_data import ExpertData, data_warning, retrieve_topic, review_datasets, write_dataset
from .trainer import resolve_deepspeed


@dataclass
class Plan:
    topic: TopicSpec
    params: TrainParams
    precision: Precision
    deepspeed: dict[str, Any] | None
    config_hash: str


def _select(topics: TopicsFile, only: Sequence[str] | str | None) -> list[TopicSpec]:
    if not only:
        return list(topics.topics)
    wanted = [only] if isinstance(only, str) else list(only)
    names = [t.name for t in topics.topics]
    for w in wanted:
        if w not in names:
            raise ConfigError(
                f"no topic named '{w}' in {topics.source}; choose one of: {', '.join(names)}", key="--only"
            )
    return [t for t in topics.topics if t.name in wanted]


def _plan(topics: TopicsFile, topic: TopicSpec, model_type: str | None = None) -> Plan:
    """Settings of one expert, validated before any model is loaded (errors point into topics.yaml)."""
    loc = topics.topic_loc(topic.name)
    try:
        params = topics.params(topic)
    except ValidationError as e:  # a combination only invalid once defaults and overrides are merged
        raise topics.error(e.errors()[0]["msg"].removeprefix("Value error, "), *loc) from None
    try:
        precision = resolve_precision(params.precision, model_type=model_type)
    except ConfigError as e:
        raise topics.error(e.message, *topics.setting_loc(topic, "precision")) from None
    try:
        ds = resolve_deepspeed(params.deepspeed, topics.resolve(".") if topics.source else None, method=params.method)
    except ConfigError as e:
        raise topics.error(e.message, *topics.setting_loc(topic, "deepspeed")) from None
    if ds is not None and params.method == "freeze" and params.freeze.gradual_unfreeze:
        raise topics.error(
            "gradual_unfreeze changes which parameters train mid-run, which DeepSpeed's flattened optimizer "
            "cannot follow; turn one of them off",
            *topics.setting_loc(topic, "deepspeed"),
        )
    extra = {}
    for f in topic.files:
        p = topics.resolve(f)
        extra[f] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    ident = {
        "params": params.model_dump(exclude={"min_passages"}),  # a warning threshold: no reason to retrain
        "queries": topic.queries,
        "theme": topics.theme,
        "files": extra,
        "name": topic.name,
        "samples": SAMPLE_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return Plan(topic, params, precision, ds, digest)


def _datasets(tokenizer: Any, topic: TopicSpec, params: TrainParams, data: ExpertData) -> tuple[LMDataset, LMDataset]:
    condition = None
    if params.condition.enabled:
        vocab = tokenizer.get_vocab()
        if not all(t in vocab for t in CONDITION_TOKENS):
            raise ConfigError(
                f"condition needs the special tokens {' '.join(CONDITION_TOKENS)} in the base tokenizer; the "
                "`ensemble pretrain-base` model has them, this base does not: set condition.enabled: false",
                key="condition.enabled",
            )
        name_ids = tokenizer(" " + topic.name + " ", add_special_tokens=False)["input_ids"]
        condition = (vocab[CONDITION_TOKENS[0]], name_ids, vocab[CONDITION_TOKENS[1]])

    def build(ps: list[DataPassage]) -> list[Any]:
        ids = tokenizer([p.text for p in ps], add_special_tokens=False)["input_ids"]
        seqs = make_sequences(ids, tokenizer.eos_token_id, condition, bos_id=tokenizer.bos_token_id)
        start = start_ids(tokenizer.bos_token_id, tokenizer.eos_token_id)
        chunk = pack if params.packing else per_passage
        return chunk(seqs, params.block_size, start)

    keep = params.condition.keep_prob if condition else 1.0
    return LMDataset(build(data.train), keep, params.seed), LMDataset(build(data.val))


def _save_adapter(model: Any, info: Any, trained: Sequence[str], d: Path, fingerprint: str) -> None:
    """Write the adapter (for freeze: the `trained` tensors) into a scratch directory, then swap it in whole."""
    scratch = d / ".adapter.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    if info.method == "lora":
        model.save_pretrained(str(scratch), safe_serialization=True)
    else:
        from safetensors.torch import save_file

        names = set(trained)
        tensors = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if n in names}
        scratch.mkdir(parents=True)
        save_file(tensors, str(scratch / "trained.safetensors"), metadata={"base_fingerprint": fingerprint})
    target = d / "adapter"
    old = d / ".adapter.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    scratch.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _train_one(
    cfg: ProjectConfig,
    plan: Plan,
    data: ExpertData,
    fingerprint: str,
    progress: Progress,
    callbacks: Sequence[Any],
    topics: TopicsFile,
) -> ExpertManifest:
    from transformers import set_seed

    from .adapters import init_adapter
    from .trainer import (
        last_complete_checkpoint,
        layerwise,
        perplexity,
        remove_checkpoints,
        run_training,
        trained_names,
    )

    topic, params, prec = plan.topic, plan.params, plan.precision
    t0 = time.perf_counter()
    d = expert_dir(cfg, topic.name)
    main = dist_rank() == 0
    ckpt = d / "checkpoints"
    if main:
        (d / "manifest.json").unlink(missing_ok=True)  # the adapter is about to change
        run_file = ckpt / "run.json"
        run = run_identity(plan, data.sha256, fingerprint)
        why = discard_reason(_read_run(run_file), run)
        if why and last_complete_checkpoint(ckpt):
            progress.log(f"{topic.name}: starting over instead of resuming its checkpoint, because {why}")
        if why:
            remove_checkpoints(ckpt)
        write_dataset(d / "dataset", topic, data)
        write_json_atomic(run_file, run)
    barrier()  # the other ranks look for a checkpoint to resume only once rank 0 has decided to keep it
    set_seed(params.seed)
    model, tokenizer = load_base_model(cfg, dtype=load_dtype(params.method, prec))
    try:
        train_ds, val_ds = _datasets(tokenizer, topic, params, data)
    except ConfigError as e:
        raise topics.error(e.message, *topics.setting_loc(topic, "condition")) from None
    model, info = init_adapter(model, params)
    hold_dtypes(model, prec)
    epoch_hook, lr_of = layerwise(model, params, info.frozen_layers) if params.method == "freeze" else (None, None)
    model.to(prec.device)
    ppl_before = perplexity(model, val_ds, tokenizer.pad_token_id, precision=prec)
    trainer, outcome = run_training(
        model,
        tokenizer,
        train_ds,
        val_ds,
        params,
        prec,
        ckpt,
        task=topic.name,
        progress=progress,
        deepspeed=plan.deepspeed,
        callbacks=callbacks,
        epoch_hook=epoch_hook,
        lr_of=lr_of,
    )
    model = trainer.model
    ppl_after = perplexity(model, val_ds, tokenizer.pad_token_id, precision=prec)
    best = outcome.best
    improved = ppl_after < ppl_before
    trained = (
        trained_names(model, params, info.trainable_names, info.n_layers, info.frozen_layers, outcome)
        if params.method == "freeze"
        else []
    )
    hyper = params.model_dump()
    hyper["learning_rate"] = params.lr
    hyper.update(device=prec.device.split(":")[0], dtype=dtype_name(prec.dtype), **parameter_dtypes(model))
    manifest = ExpertManifest(
        format=MANIFEST_FORMAT,
        name=topic.name,
        title=topic.title,
        method=params.method,
        base={
            "name_or_path": cfg.base_model_path,
            "fingerprint": fingerprint,
            "revision": cfg.base_model_revision,
        },
        trained_tensors=trained,
        condition={
            "enabled": params.condition.enabled,
            "format": CONDITION_FORMAT,
            "special_tokens": list(CONDITION_TOKENS),
        }
        if params.condition.enabled
        else {"enabled": False},
        hyperparameters={
            **hyper,
            **(
                {"frozen_layers": info.frozen_layers, "n_layers": info.n_layers}
                if params.method == "freeze"
                else {"lora_details": info.details}
            ),
        },
        data={
            "queries": len(topic.queries),
            "hits": data.hits,
            "passages_train": len(data.train),
            "passages_val": len(data.val),
            "chars_train": sum(len(p.text) for p in data.train),
            "chars_val": sum(len(p.text) for p in data.val),
            "samples_train": len(train_ds),
            "samples_val": len(val_ds),
            "tokens_train": train_ds.n_tokens,
            "tokens_val": val_ds.n_tokens,
            "dataset_sha256": data.sha256,
            **data.report(),
        },
        trainable_params=info.trainable_params,
        total_params=info.total_params,
        val_perplexity_before=ppl_before,
        val_perplexity_after=ppl_after,
        val_perplexity_by_epoch=[h["perplexity"] for h in outcome.val_history],
        val_history=outcome.val_history,
        best_epoch=best["epoch"] if best else None,
        best_step=outcome.best_step,
        stopped_early=outcome.stopped_early,
        improved=improved,
        steps=outcome.global_step,
        epochs=outcome.epochs,
        tokens_seen=outcome.tokens_seen,
        wall_seconds=round(time.perf_counter() - t0, 2),
        train_seconds=round(outcome.train_seconds, 2),
        tokens_per_s=round(outcome.tokens_this_run / max(outcome.train_seconds, 1e-9), 1),
        peak_memory_bytes=outcome.peak_memory_bytes,
        peak_memory_kind=outcome.peak_memory_kind,
        resumed_from=outcome.resumed_from,
        config_hash=plan.config_hash,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if main:
        _save_adapter(model, info, trained, d, fingerprint)
        write_json_atomic(d / "manifest.json", manifest.model_dump(mode="json", exclude={"path"}))
        remove_checkpoints(ckpt)
    progress.log(
        f"{topic.name}: validation perplexity {ppl_before:.2f} → {ppl_after:.2f} "
        f"({_kept(outcome)}, {outcome.global_step} steps, {manifest.wall_seconds:.0f} s)"
    )
    if not improved:
        progress.log(
            f"warning: {topic.name}: the expert's best validation perplexity ({ppl_after:.2f}) is not below the "
            f"base model's ({ppl_before:.2f}); it is saved with improved: false. Lower learning_rate, give it more "
            "passages (broader queries, a larger top_k) or fewer epochs"
        )
    return manifest.model_copy(update={"path": str(d)})


RUN_FORMAT = "ensemble-expert-run/2"

# What a checkpoint must share with the run about to start, and how a mismatch is explained.
_RUN_FIELDS = (
    ("base_fingerprint", "the base model changed since it was written"),
    ("config_hash", "the expert's settings, queries or files changed"),
    ("deepspeed_sha256", "the DeepSpeed configuration changed"),
    ("dataset_sha256", "retrieval now finds other passages (the index changed)"),
)


def run_identity(plan: Plan, dataset_sha256: str, fingerprint: str) -> dict[str, Any]:
    """Everything a checkpoint must match to be resumed: base, settings, DeepSpeed config and data."""
    ds = json.dumps(plan.deepspeed, sort_keys=True) if plan.deepspeed is not None else None
    return {
        "format": RUN_FORMAT,
        "base_fingerprint": fingerprint,
        "config_hash": plan.config_hash,
        "deepspeed_sha256": hashlib.sha256(ds.encode()).hexdigest() if ds else None,
        "dataset_sha256": dataset_sha256,
    }


def discard_reason(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """None when a checkpoint written for `old` may resume the run `new`; else why it may not."""
    if old is None:
        return "it records no run (written by an older version, or its run.json is damaged)"
    if old.get("format") != new["format"]:
        return "it was written by an older version that did not record the base model"
    return next((why for key, why in _RUN_FIELDS if old.get(key) != new[key]), None)


def _read_run(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _kept(outcome: Any) -> str:
    best = outcome.best
    if best is None:
        return "last model kept"
    stop = ", stopped early" if outcome.stopped_early else ""
    return f"best of {len(outcome.val_history)} validations kept: epoch {best['epoch']:g}{stop}"


def _finished(
    cfg: ProjectConfig, plan: Plan, data: ExpertData, fingerprint: str
) -> tuple[ExpertManifest | None, str | None]:
    """(manifest, None) when done for this config, data and base; else (None, why it must train or None)."""
    d = expert_dir(cfg, plan.topic.name)
    if not (d / "manifest.json").is_file():
        return None, None
    try:
        m = read_manifest(d)
    except EnsembleError:
        return None, "its manifest is unreadable"
    if m.base.fingerprint != fingerprint:
        return None, "the base model changed"
    if m.config_hash != plan.config_hash:
        return None, "its settings, queries or files changed"
    if m.data.get("dataset_sha256") != data.sha256:
        return None, "retrieval now finds other passages (the index changed)"
    return m, None


def train_experts(
    cfg: ProjectConfig,
    topics_path: str | Path,
    *,
    only: Sequence[str] | str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    callbacks: Sequence[Any] = (),
    strict: bool = False,
) -> list[ExpertManifest]:
    """Train every topic's expert (or those in `only`); finished ones are kept unless `force`, interrupted
    ones resume from their last checkpoint. `callbacks` are extra HF TrainerCallbacks. Each topic's data is
    reported (hits per query, passages, overlap with the other topics) and a thin or shared dataset warned
    about (`progress.log`, or a Python warning without `progress`); `strict` makes that an error, raised
    before any model is loaded or anything is written."""
    from ..retrieval import base as retrieval

    warn = progress.log if progress is not None else data_warning
    progress = progress or NullProgress()
    topics = load_topics(topics_path)
    selected = _select(topics, only)
    check_base(cfg)
    model_type = base_model_type(cfg)
    plans = [_plan(topics, t, model_type) for t in selected]
    lock = work_lock(cfg.work_path / "training.lock") if dist_rank() == 0 else contextlib.nullcontext()
    with lock, quiet_hf():
        retriever = retrieval.open_retriever(cfg)
        try:
            data = {p.topic.name: retrieve_topic(retriever, topics, p.topic, p.params) for p in plans}
        finally:
            retriever.close()
        params = {p.topic.name: p.params for p in plans}
        data = review_datasets(topics, data, params, strict=strict, log=progress.log, warn=warn)
        fingerprint = base_fingerprint(cfg)
        results: dict[str, ExpertManifest] = {}
        todo: list[Plan] = []
        for plan in plans:
            name = plan.topic.name
            done, why = (None, None) if force else _finished(cfg, plan, data[name], fingerprint)
            if done is not None:
                progress.log(f"{name}: already trained; skipping (--force to retrain)")
                results[name] = done.model_copy(update={"data": {**done.data, **data[name].report()}})
                continue
            if why:
                progress.log(f"{name}: retraining because {why}")
            todo.append(plan)
        if todo:
            progress.start("experts", total=len(todo))
            try:
                for plan in todo:
                    results[plan.topic.name] = _train_one(
                        cfg, plan, data[plan.topic.name], fingerprint, progress, callbacks, topics
                    )
                    progress.advance("experts", 1, info=plan.topic.name)
            finally:
                progress.end("experts")
    return [results[t.name] for t in selected]
