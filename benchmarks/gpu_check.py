"""GPU readiness in a few minutes (issue 16): what a first GPU run of training and composition would hit.

    python benchmarks/gpu_check.py [--steps 6] [--rows 48] [--out DIR]

On a tiny base (pretrained here in seconds) with two LoRA experts and one freeze expert:

- train: `--steps` optimizer steps per expert in each precision the device has (fp32; bf16 where supported;
  fp16 on a GPU only), with and without DeepSpeed ZeRO-2 (GPU only: the CPU path is tests/training): the loss
  is finite, the trained/frozen parameters' dtypes, peak memory, memory left allocated once the run is released,
  and whether the model was freed (a ZeRO-2 engine that is not released keeps it alive);
- compose: greedy and sampled rows of every expert, batched vs each row alone, in each precision the device
  composes in; fp32 must match row for row, bf16 may not (README, "Composing");
- overflow: an injected +inf in the logits must raise NumericsError, in training and in composition;
- sampler: the share of a `--rows`-row sampled round spent in the host's sampler (batched on the device, one
  host copy per step since a74f92a).

Prints one JSON line per check, then a summary line; exits 1 when a check failed. Checks the device cannot run
(fp16 on a CPU, bf16 on a GPU without it, ZeRO-2 without a GPU or without deepspeed) print as skipped, saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

EXPERTS = (("family", "lora"), ("friends", "lora"), ("nature", "freeze"))
WORDS = {
    "family": ["가족", "어머니", "아버지", "동생", "저녁", "식탁"],
    "friends": ["친구", "학교", "편지", "여행", "약속", "웃음"],
    "nature": ["산", "바다", "계절", "숲", "바람", "꽃"],
}
FRAMES = [
    "우리는 {a}와 {b}을 함께 이야기했다.",
    "{a}에서 {b}까지 걸으며 {c}을 보았다.",
    "{a}의 {b}은 {c}처럼 따뜻했다.",
]
PROMPTS = ["우리 가족은 저녁마다", "친구와 나는 학교에서", "봄이 오면", "바다"]


@dataclass
class Report:
    """The checks so far; each is printed as one JSON line when it is recorded."""

    records: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, check: str, ok: bool | None, **fields: Any) -> dict[str, Any]:
        """`ok` None: skipped (with a `why`)."""
        record = {"check": check, "status": "skipped" if ok is None else "ok" if ok else "FAILED", **fields}
        self.records.append(record)
        print(json.dumps(record, ensure_ascii=False, default=str), flush=True)
        return record

    def summary(self, device: str) -> dict[str, Any]:
        failed = [r for r in self.records if r["status"] == "FAILED"]
        return {
            "summary": True,
            "device": device,
            "checks": len(self.records),
            "ok": sum(r["status"] == "ok" for r in self.records),
            "skipped": sum(r["status"] == "skipped" for r in self.records),
            "failed": [{k: v for k, v in r.items() if k != "status"} for r in failed],
            "seconds": round(time.perf_counter() - self.started, 1),
        }


def corpus(per_topic: int = 12) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for topic, words in WORDS.items():
        sentences = [
            f.format(a=words[i % 6], b=words[(i + 1) % 6], c=words[(i + 2) % 6]) for i, f in enumerate(FRAMES * 2)
        ]
        out[topic] = [" ".join(sentences[(i + j) % len(sentences)] for j in range(3)) for i in range(per_topic)]
    return out


def build_base(directory: Path, texts: list[str]) -> Path:
    from ensemble.training.pretrain import PRESETS, pretrain_on_texts

    pretrain_on_texts(texts, directory, replace(PRESETS["test"], max_steps=20, epochs=1000), precision="fp32")
    return directory


def device_info() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "cuda": False, "bf16": True, "torch": torch.__version__}
    free, total = torch.cuda.mem_get_info()
    return {
        "device": torch.cuda.get_device_name(),
        "cuda": True,
        "bf16": torch.cuda.is_bf16_supported(including_emulation=False),
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "memory_free_gib": round(free / 2**30, 1),
        "memory_total_gib": round(total / 2**30, 1),
        "torch": torch.__version__,
    }


def precision_skip(precision: str, info: dict[str, Any]) -> str | None:
    """Why this device cannot run `precision`, or None."""
    if precision == "fp16" and not info["cuda"]:
        return "fp16 runs on a GPU only (training refuses it on a CPU; compose uses it only on a GPU without bf16)"
    if precision == "bf16" and not info["bf16"]:
        return f"{info['device']} has no bf16 support"
    return None


def zero2_skip(info: dict[str, Any]) -> str | None:
    if not info["cuda"]:
        return "ZeRO-2 is checked on a GPU here; on a CPU tests/training/test_train_experts.py runs it"
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return "deepspeed is not installed (pip install 'expert-ensemble[deepspeed]')"
    return None


def allocated(info: dict[str, Any]) -> int:
    import torch

    return int(torch.cuda.memory_allocated()) if info["cuda"] else 0


def dataset(tokenizer: Any, texts: list[str], block: int = 64) -> Any:
    from ensemble.training.dataset import LMDataset, make_sequences, pack

    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return LMDataset(pack(make_sequences(ids, tokenizer.eos_token_id, bos_id=tokenizer.bos_token_id), block))


def train_params(method: str, precision: str, steps: int, zero2: bool) -> Any:
    from ensemble.training.config import TrainParams

    return TrainParams(
        method=method,
        max_steps=steps,
        micro_batch_size=2,
        grad_accum=1,
        block_size=64,
        warmup_steps=0,
        precision=precision,
        gradient_checkpointing=False,
        learning_rate=1e-3,
        deepspeed="zero2" if zero2 else None,
        freeze={"layers": 1},
    )


def train_expert(
    base: Path, texts: list[str], params: Any, out: Path, *, overflow: bool = False
) -> tuple[dict[str, Any], weakref.ref]:
    """Train one expert on `texts`; save its adapter in `out`. Returns its figures and a weak reference to the
    trained model (dead once the run released it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ensemble.training.adapters import init_adapter
    from ensemble.training.dtypes import hold_dtypes, load_dtype, parameter_dtypes
    from ensemble.training.experts import _save_adapter
    from ensemble.training.runtime import peak_memory, resolve_precision
    from ensemble.training.trainer import resolve_deepspeed, run_training

    prec = resolve_precision(params.precision)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=load_dtype(params.method, prec))
    model, adapter = init_adapter(model, params)
    hold_dtypes(model, prec)
    if overflow:
        model.get_output_embeddings().register_forward_hook(lambda m, i, o: o + float("inf"))
    model.to(prec.device)
    ds = resolve_deepspeed(params.deepspeed, None, method=params.method)
    t0 = time.perf_counter()
    trainer, outcome = run_training(
        model, tokenizer, dataset(tokenizer, texts), None, params, prec, out / "run", task="check",
        deepspeed=ds, save_checkpoints=False,
    )  # fmt: skip
    trained = trainer.model
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    figures = {
        "steps": outcome.global_step,
        "final_loss": losses[-1] if losses else None,
        "finite": bool(losses) and all(math.isfinite(x) for x in losses),
        **parameter_dtypes(trained),
        "peak_mib": round(peak_memory(prec.device)[0] / 2**20, 1),
        "peak_kind": peak_memory(prec.device)[1],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    names = adapter.trainable_names if params.method == "freeze" else []
    _save_adapter(trained, adapter, names, out, "gpu-check")
    ref = weakref.ref(trained)
    del trainer, trained, model
    gc.collect()
    if prec.device != "cpu":
        torch.cuda.empty_cache()
    return figures, ref


def check_training(report: Report, info: dict[str, Any], base: Path, texts: dict[str, list[str]], args: Any) -> Path:
    """Every expert in every precision, with and without ZeRO-2; returns the directory of the fp32 experts."""
    experts = args.out / "experts"
    for precision in ("fp32", "bf16", "fp16"):
        for zero2 in (False, True):
            why = precision_skip(precision, info) or (zero2_skip(info) if zero2 else None)
            if why:
                report.add("train", None, precision=precision, zero2=zero2, why=why)
                continue
            for name, method in EXPERTS:
                out = (experts if precision == "fp32" and not zero2 else args.out / "scratch") / name
                before = allocated(info)
                params = train_params(method, precision, args.steps, zero2)
                try:
                    figures, ref = train_expert(base, texts[name], params, out)
                except Exception as e:  # a check reports, it does not stop the others
                    report.add("train", False, precision=precision, zero2=zero2, expert=name, error=repr(e)[:300])
                    continue
                gc.collect()
                released = ref() is None
                left = allocated(info) - before
                ok = figures["finite"] and released and left < 2**20
                report.add(
                    "train", ok, precision=precision, zero2=zero2, expert=name, method=method, **figures,
                    released=released, left_allocated_mib=round(left / 2**20, 2),
                )  # fmt: skip
    return experts


def load_host(base: Path, experts: Path, precision: str, info: dict[str, Any]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ensemble.composition.host import ExpertHost

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to("cuda" if info["cuda"] else "cpu")
    lora = {n: experts / n / "adapter" for n, m in EXPERTS if m == "lora"}
    freeze = {n: experts / n / "adapter" / "trained.safetensors" for n, m in EXPERTS if m == "freeze"}
    return ExpertHost(model, AutoTokenizer.from_pretrained(base), lora=lora, freeze=freeze)


def requests(sampled: bool, copies: int = 1, max_new: int = 16) -> list[Any]:
    from ensemble.composition.types import Request, Sampling

    sampling = Sampling(
        max_new_tokens=max_new,
        temperature=0.8 if sampled else 0,
        top_k=30,
        top_p=0.95,
        repetition_penalty=1.1,
        penalty_exempt_particles=True,
        no_repeat_ngram_size=3,
    )
    experts = ["base", *(n for n, _ in EXPERTS)]
    rows = [(p, e, c) for p in PROMPTS for e in experts for c in range(copies)]
    return [Request(p, e, sampling, 1000 + i) for i, (p, e, _) in enumerate(rows)]


def check_compose(report: Report, info: dict[str, Any], base: Path, experts: Path) -> None:
    for precision in ("fp32", "bf16", "fp16"):
        why = precision_skip(precision, info)
        if why:
            report.add("compose", None, precision=precision, why=why)
            continue
        host = load_host(base, experts, precision, info)
        for sampled in (False, True):
            reqs = requests(sampled)
            batched = host.generate(reqs)
            alone = [host.generate([r])[0] for r in reqs]
            differ = sum(b.text != a.text for b, a in zip(batched, alone, strict=True))
            empty = sum(not b.text for b in batched)
            # fp32 keeps "a row's text does not depend on its neighbours"; bf16 promises less (README)
            ok = empty == 0 and (differ == 0 or precision != "fp32")
            mode = "sampled" if sampled else "greedy"
            report.add(
                "compose", ok, precision=precision, sampling=mode, rows=len(reqs), differ_from_alone=differ,
                empty=empty,
            )  # fmt: skip


@contextlib.contextmanager
def raises(kind: type[BaseException]) -> Iterator[list[BaseException]]:
    caught: list[BaseException] = []
    try:
        yield caught
    except kind as e:
        caught.append(e)


def check_overflow(report: Report, info: dict[str, Any], base: Path, experts: Path, texts: list[str], args) -> None:
    from ensemble.core.errors import NumericsError

    host = load_host(base, experts, "fp32", info)
    hook = host.output_layer().register_forward_hook(lambda m, i, o: o + float("inf"))
    with raises(NumericsError) as caught:
        host.generate(requests(False))
    hook.remove()
    report.add("overflow", bool(caught), where="compose", error=str(caught[0]) if caught else "no error raised")
    params = train_params("lora", "fp32", 2, False)
    with raises(NumericsError) as caught:
        train_expert(base, texts, params, args.out / "scratch" / "overflow", overflow=True)
    report.add("overflow", bool(caught), where="training", error=str(caught[0]) if caught else "no error raised")


def timed(fn: Callable[..., Any], total: list[float], sync: Callable[[], None]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        sync()
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            sync()
            total[0] += time.perf_counter() - t0

    return wrapper


def check_sampler(report: Report, info: dict[str, Any], base: Path, experts: Path, rows: int) -> None:
    """The sampler's share of one sampled round of `rows` rows, in the precision compose picks (`auto`)."""
    import torch

    from ensemble.composition import host as host_module
    from ensemble.training.runtime import resolve_precision

    precision = resolve_precision("auto", training=False).name
    host = load_host(base, experts, precision, info)
    reqs = requests(True, copies=-(-rows // (len(PROMPTS) * (len(EXPERTS) + 1))), max_new=32)[:rows]
    host.generate(reqs[:4])  # warm-up
    sync = torch.cuda.synchronize if info["cuda"] else (lambda: None)
    spent = [0.0]
    original = host_module.RowSampler.choose
    host_module.RowSampler.choose = timed(original, spent, sync)
    try:
        sync()
        t0 = time.perf_counter()
        out = host.generate(reqs)
        sync()
        wall = time.perf_counter() - t0
    finally:
        host_module.RowSampler.choose = original
    tokens = sum(g.tokens for g in out)
    share = spent[0] / wall
    report.add(  # a figure to compare between runs and cards, not a pass mark
        "sampler", True, precision=precision, rows=len(reqs), tokens=tokens, round_s=round(wall, 3),
        sampler_s=round(spent[0], 3), sampler_share=round(share, 3), tokens_per_s=round(tokens / wall, 1),
    )  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ensemble.training.runtime import quiet_hf

    report = Report()
    info = device_info()
    report.add("device", True, **info)
    if not info["cuda"]:
        torch.set_num_threads(1)  # a tiny model gains nothing from more, and loses much on a shared machine
    texts = corpus()
    with quiet_hf():
        base = build_base(args.out / "base", [t for ts in texts.values() for t in ts])
        experts = check_training(report, info, base, texts, args)
        if all((experts / n / "adapter").is_dir() for n, _ in EXPERTS):
            check_compose(report, info, base, experts)
            check_overflow(report, info, base, experts, texts["family"], args)
            check_sampler(report, info, base, experts, args.rows)
        else:
            report.add("compose", False, why="the fp32 experts did not train; nothing to compose with")
    summary = report.summary(info["device"])
    print(json.dumps(summary, ensure_ascii=False, default=str), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per expert and precision")
    ap.add_argument("--rows", type=int, default=48, help="rows of the round whose sampler share is measured")
    ap.add_argument("--out", type=Path, default=None, help="keep the base and experts here (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or Path(tmp)
        summary = run(args)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
