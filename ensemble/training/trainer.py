"""HF Trainer wiring shared by pretrain-base and train-experts: DeepSpeed, resume, progress, perplexity."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, NumericsError
from ..core.progress import NullProgress, Progress
from .config import TrainParams
from .dataset import LMDataset
from .dtypes import dtype_name
from .runtime import Precision, peak_memory, reset_peak_memory
from .schedule import block_lr, lowest_trainable

SHIPPED_DEEPSPEED = {"zero2": "zero2.json"}
EVAL_METRIC = "eval_perplexity"


@dataclass
class TrainOutcome:
    global_step: int
    epochs: float
    tokens_seen: int  # all tokens fed to the model over the run, including before a resume
    tokens_this_run: int
    train_seconds: float
    final_loss: float | None
    peak_memory_bytes: int
    peak_memory_kind: str
    resumed_from: str | None
    val_history: list[dict[str, float]]  # every evaluation of the run, resumed ones included: step, epoch, perplexity
    best_step: int | None  # the evaluation whose model was kept (None: no evaluation, the last model was kept)
    stopped_early: bool
    planned_steps: int = 0  # the optimizer steps the run was scheduled for (max_steps, or epochs × steps per epoch)
    planned_epochs: int = 0  # the epochs those steps span

    @property
    def kept_step(self) -> int:
        """The optimizer steps behind the model that was kept."""
        return self.best_step if self.best_step is not None else self.global_step

    @property
    def best(self) -> dict[str, float] | None:
        return next((h for h in self.val_history if h["step"] == self.best_step), None)


def collator(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    """Right-pad a batch; padded positions are masked out of attention and loss."""
    import torch

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.tensor(b["labels"], dtype=torch.long)
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def perplexity(
    model: Any, dataset: LMDataset, pad_id: int, *, batch_size: int = 8, precision: Precision | None = None
) -> float:
    """Token-weighted perplexity of `model` on `dataset` (every label token counts once)."""
    import torch

    collate = collator(pad_id)
    device = next(model.parameters()).device
    autocast_dtype = precision.dtype if precision and (precision.fp16 or precision.bf16) else None
    was_training = model.training
    model.eval()
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total_nll += float(nll)
            total_tokens += int((labels != -100).sum())
    model.train(was_training)
    if total_tokens == 0:
        return float("nan")
    if not math.isfinite(total_nll):
        name = precision.name if precision else dtype_name(next(model.parameters()).dtype)
        raise NumericsError(f"the validation loss is {total_nll} in {name}: {overflow_advice(name)}")
    return math.exp(min(total_nll / total_tokens, 50.0))


def overflow_advice(precision: str) -> str:
    """What to do when a computation in `precision` gave NaN or infinity."""
    if precision == "fp16":
        return "the model's numbers overflowed fp16; use precision: bf16 (Ampere or newer GPUs) or fp32"
    return f"the model diverged in {precision}; lower learning_rate (and check the base model loads as it should)"


def check_loss(loss: float, step: int, precision: str) -> None:
    """A NaN or infinite training loss stops the run: every later step would learn nothing or worse."""
    if not math.isfinite(loss):
        raise NumericsError(f"the training loss is {loss} at step {step} in {precision}: {overflow_advice(precision)}")


def resolve_deepspeed(value: str | None, relative_to: Path | None, *, method: str) -> dict[str, Any] | None:
    """`zero2` → the shipped config; a path → that JSON. ZeRO-3 is refused for LoRA and freeze (see messages)."""
    if value is None:
        return None
    if value in SHIPPED_DEEPSPEED:
        text = (resources.files(__package__) / "deepspeed" / SHIPPED_DEEPSPEED[value]).read_text(encoding="utf-8")
        source = value
    else:
        p = Path(value).expanduser()
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        try:
            text = p.read_text(encoding="utf-8")
        except OSError:
            raise ConfigError(
                f"DeepSpeed config {p} not found; use deepspeed: zero2 or the path of a JSON file",
                key="deepspeed",
            ) from None
        source = str(p)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"DeepSpeed config {source} is not valid JSON: {e}", key="deepspeed") from None
    stage = int(config.get("zero_optimization", {}).get("stage", 0))
    if stage == 3 and method == "lora":
        raise ConfigError(
            "ZeRO-3 partitions the base weights, and PEFT then saves empty LoRA adapters; "
            "use deepspeed: zero2 (LoRA's optimizer state is tiny, ZeRO-3 saves nothing worth it)",
            key="deepspeed",
        )
    if stage == 3 and method == "freeze":
        raise ConfigError(
            "ZeRO-3 partitions every weight across processes, and method freeze would save the partition "
            "placeholders instead of the trained blocks; use deepspeed: zero2 (it shards the optimizer state, "
            "which is most of the memory full fine-tuning of the upper blocks needs)",
            key="deepspeed",
        )
    return config


def ensure_dist_env() -> None:
    """DeepSpeed needs a process group even for one process; make a one-process group if no launcher did."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        os.environ.setdefault(key, value)


def _checkpointing_args(enabled: bool) -> dict[str, Any]:
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    # Non-reentrant checkpointing lets gradients reach trained blocks even when the embeddings are frozen.
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    out: dict[str, Any] = {name: enabled}
    if enabled:
        out[name + "_kwargs"] = {"use_reentrant": False}
    return out


UnfreezeHook = Callable[[int, int, int], None]  # (optimizer step, planned steps, planned epochs)


def _progress_callback(
    progress: Progress, task: str, dataset: LMDataset, unfreeze: UnfreezeHook | None, precision: str = "fp32"
):
    from transformers import TrainerCallback

    class Forward(TrainerCallback):
        def __init__(self) -> None:
            self.loss: float | None = None
            self.started = False

        def on_train_begin(self, args, state, control, **kw):
            progress.start(task, total=state.max_steps)
            if state.global_step:
                progress.advance(task, state.global_step, info="resumed")
            self.started = True
            self.on_step_begin(args, state, control)

        def on_epoch_begin(self, args, state, control, **kw):
            epoch = int(state.epoch + 1e-6) if state.epoch else 0
            dataset.set_epoch(epoch)

        def on_step_begin(self, args, state, control, **kw):
            if unfreeze is not None:
                unfreeze(state.global_step, state.max_steps, state.num_train_epochs)

        def on_step_end(self, args, state, control, **kw):
            progress.advance(task, 1, info=f"loss {self.loss:.3f}" if self.loss is not None else None)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
                check_loss(self.loss, state.global_step, precision)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            ppl = (metrics or {}).get(EVAL_METRIC)
            if ppl is not None:
                progress.log(
                    f"{task}: epoch {state.epoch:.2f} (step {state.global_step}) validation perplexity {ppl:.2f}"
                )

    return Forward()


def _make_trainer_class(lr_of: Callable[[str], float] | None, val: Callable[[Any], float] | None):
    from transformers import Trainer

    class ExpertTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            # Our token-weighted perplexity, not the Trainer's mean of batch losses: the same measure as before
            # and after training, and no DeepSpeed inference engine (ZeRO-2 has none). The Trainer keeps the
            # best checkpoint by it, restores it at the end and records it in its resumable state.
            if val is None:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            metrics = {f"{metric_key_prefix}_perplexity": val(self.model)}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

        def create_optimizer(self, model=None):
            if lr_of is None or self.optimizer is not None:
                return super().create_optimizer(model)
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[float, float], list[Any]] = {}
            for n, p in opt_model.named_parameters():
                if p.requires_grad:
                    wd = self.args.weight_decay if n in decay else 0.0
                    groups.setdefault((lr_of(n), wd), []).append(p)
            param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("lr", None)
            self.optimizer = cls(param_groups, lr=self.args.learning_rate, **kwargs)
            return self.optimizer

    return ExpertTrainer


def _block_of(model: Any) -> dict[str, int]:
    """Parameter name → index of the block that holds it (parameters outside the blocks are absent)."""
    from .adapters import block_index_of

    index = block_index_of(model)
    return {name: index[id(p)] for name, p in model.named_parameters() if id(p) in index}


def layerwise(
    model: Any, params: TrainParams, frozen: int
) -> tuple[UnfreezeHook | None, Callable[[str], float] | None]:
    """For method freeze: the gradual-unfreezing hook (optimizer step → requires_grad, planned from the steps
    the run really takes) and the per-parameter LR."""
    from .adapters import find_blocks

    n = len(find_blocks(model))
    names_by_block = _block_of(model)
    lr_of = None
    if params.freeze.layer_lr_decay < 1.0:
        decay = params.freeze.layer_lr_decay

        def lr_of(name: str) -> float:
            return block_lr(params.lr, n, names_by_block.get(name, n), decay)

    hook = None
    if params.freeze.gradual_unfreeze:
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}

        def hook(step: int, total_steps: int, epochs: int) -> None:
            lowest = lowest_trainable(n, frozen, step, total_steps, epochs)
            for name, p in model.named_parameters():
                if name in trainable and name in names_by_block:
                    p.requires_grad_(names_by_block[name] >= lowest)

    return hook, lr_of


def trained_names(
    model: Any, params: TrainParams, names: Sequence[str], n_layers: int, frozen: int, outcome: TrainOutcome
) -> list[str]:
    """The tensors of `names` that trained before the kept model: with gradual unfreezing, a block that had not
    opened by then (the run stopped early, or ended) kept the base's weights and is left out."""
    if not params.freeze.gradual_unfreeze:
        return list(names)
    lowest = lowest_trainable(n_layers, frozen, outcome.kept_step - 1, outcome.planned_steps, outcome.planned_epochs)
    block_of = _block_of(model)
    return [name for name in names if block_of.get(name, n_layers) >= lowest]


def run_training(
    model: Any,
    tokenizer: Any,
    train_ds: LMDataset,
    val_ds: LMDataset | None,
    params: TrainParams,
    precision: Precision,
    output_dir: Path,
    *,
    task: str,
    progress: Progress | None = None,
    deepspeed: dict[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    epoch_hook: Callable[[int], None] | None = None,
    lr_of: Callable[[str], float] | None = None,
    save_checkpoints: bool = True,
) -> tuple[Any, TrainOutcome]:
    """Train with the HF Trainer, resuming from the last checkpoint in `output_dir`."""
    from transformers import EarlyStoppingCallback, PrinterCallback, TrainingArguments

    progress = progress or NullProgress()
    accelerate_env = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    if deepspeed is not None:
        ensure_dist_env()
    output_dir.mkdir(parents=True, exist_ok=True)
    if getattr(model.config, "use_cache", None) is not None:
        model.config.use_cache = False
    has_val = val_ds is not None and len(val_ds) > 0
    keep_best = has_val and save_checkpoints  # the best model is restored from its checkpoint
    schedule = _schedule_args(params, save_checkpoints=save_checkpoints, keep_best=keep_best)
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=params.micro_batch_size,
        per_device_eval_batch_size=params.micro_batch_size,
        gradient_accumulation_steps=params.grad_accum,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        learning_rate=params.lr,
        lr_scheduler_type="constant_with_warmup" if params.lr_schedule == "constant" else params.lr_schedule,
        warmup_steps=params.warmup_steps,
        weight_decay=params.weight_decay,
        fp16=precision.fp16,
        bf16=precision.bf16,
        use_cpu=precision.device == "cpu",
        deepspeed=deepspeed,
        seed=params.seed,
        data_seed=params.seed,
        logging_strategy="steps",
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss must show, not be replaced by the mean of the others
        disable_tqdm=True,
        report_to="none",
        log_level="error",
        include_num_input_tokens_seen="non_padding",
        label_names=["labels"],
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **schedule,
        **_checkpointing_args(params.gradient_checkpointing),
    )

    def val(m: Any) -> float:
        return perplexity(m, val_ds, tokenizer.pad_token_id, batch_size=params.micro_batch_size, precision=precision)

    forward = _progress_callback(progress, task, train_ds, epoch_hook, precision.name)
    stopping = [EarlyStoppingCallback(early_stopping_patience=params.patience)] if keep_best and params.patience else []
    trainer = _make_trainer_class(lr_of, val if keep_best else None)(
        model=model,
        args=args,
        data_collator=collator(tokenizer.pad_token_id),
        train_dataset=train_ds,
        eval_dataset=val_ds if keep_best else None,
        processing_class=tokenizer,
        callbacks=[forward, *stopping, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log line on stdout, which carries the product
    last = last_complete_checkpoint(output_dir) if save_checkpoints else None
    reset_peak_memory(precision.device)
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=last)
        if deepspeed is not None and (precision.fp16 or precision.bf16):
            from .dtypes import fp32_from_masters

            fp32_from_masters(trainer.model)  # while the engine still holds the masters
    finally:
        if forward.started:
            progress.end(task)
        release(trainer)
        if deepspeed is not None:
            _forget_deepspeed(accelerate_env)
    seconds = time.perf_counter() - t0
    peak, kind = peak_memory(precision.device)
    state = trainer.state
    tokens_this_run = int(state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0))
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    outcome = TrainOutcome(
        global_step=int(state.global_step),
        epochs=float(state.epoch or 0.0),
        tokens_seen=int(state.num_input_tokens_seen),
        tokens_this_run=tokens_this_run,
        train_seconds=float(result.metrics.get("train_runtime", seconds)),
        final_loss=float(losses[-1]) if losses else None,
        peak_memory_bytes=peak,
        peak_memory_kind=kind,
        resumed_from=Path(last).name if last else None,
        val_history=[
            {"step": int(h["step"]), "epoch": round(float(h.get("epoch") or 0.0), 4), "perplexity": h[EVAL_METRIC]}
            for h in state.log_history
            if EVAL_METRIC in h
        ],
        best_step=state.best_global_step if keep_best and state.best_model_checkpoint else None,
        stopped_early=state.global_step < state.max_steps,
        planned_steps=int(state.max_steps),
        planned_epochs=int(state.num_train_epochs),
    )
    return trainer, outcome


def _schedule_args(params: TrainParams, *, save_checkpoints: bool, keep_best: bool) -> dict[str, Any]:
    """When to checkpoint and to evaluate. Evaluations fall on checkpoints (every epoch, or every `eval_steps`
    / `save_steps`), so the Trainer can restore the best one at the end and a resumed run knows it."""
    if not save_checkpoints:
        return {"save_strategy": "no", "eval_strategy": "no"}
    every = params.eval_steps or params.save_steps
    out: dict[str, Any] = (
        {"save_strategy": "steps", "save_steps": params.save_steps or every} if every else {"save_strategy": "epoch"}
    )
    out.update(save_total_limit=1, save_only_model=False, eval_strategy="no")
    if keep_best:
        out.update(
            eval_strategy="steps" if every else "epoch",
            load_best_model_at_end=True,
            metric_for_best_model=EVAL_METRIC,
            greater_is_better=False,
            restore_callback_states_from_checkpoint=True,  # early stopping's count of validations without gain
        )
        if every:
            out["eval_steps"] = every
    return out


def release(trainer: Any) -> None:
    """Drop what the Trainer holds beyond the model: optimizer state, scheduler and any DeepSpeed engine. An engine
    that is not destroyed keeps its model and optimizer state alive process-wide, one more set per expert trained.
    `trainer.model` stays usable."""
    trainer.accelerator.free_memory()
    trainer.model_wrapped = trainer.model
    trainer.optimizer = None
    trainer.lr_scheduler = None
    if hasattr(trainer, "deepspeed"):
        trainer.deepspeed = None


def _forget_deepspeed(accelerate_env: str | None) -> None:
    """accelerate and transformers keep the DeepSpeed plugin process-wide; the next Trainer in this process
    (the next expert, or one without DeepSpeed) must configure its own."""
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    AcceleratorState._reset_state(reset_partial_state=True)
    if accelerate_env is None:  # accelerate sets it for good once it has seen a DeepSpeed plugin
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
    else:
        os.environ["ACCELERATE_USE_DEEPSPEED"] = accelerate_env


def remove_checkpoints(output_dir: Path) -> None:
    shutil.rmtree(output_dir, ignore_errors=True)


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint that HF Trainer finished writing, or None; newer, half-written ones are removed.

    Trainer writes `checkpoint-N/` in place, its `trainer_state.json` last: a run killed while saving leaves a
    directory that `resume_from_checkpoint` rejects.
    """
    if not output_dir.is_dir():
        return None
    found = []
    for d in output_dir.iterdir():
        step = d.name.removeprefix("checkpoint-")
        if d.is_dir() and d.name.startswith("checkpoint-") and step.isdigit():
            found.append((int(step), d))
    for _, d in sorted(found, reverse=True):
        try:
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
            return str(d)
        except (OSError, ValueError):
            shutil.rmtree(d, ignore_errors=True)
    return None
