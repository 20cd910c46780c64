"""Expert training cost: LoRA vs partial freeze vs full fine-tuning on a GPT-2-124M-shaped model.

    python benchmarks/training.py [--steps 3] [--grad-accum 2] [--seq 256] [--threads 1] [--micro-batch 1 4]
                                  [--size 124m|tiny]

Same base (random init: speed and memory do not depend on what the weights say; a tiny model's figures are
dominated by overhead and mislead), same data (random token blocks of --seq tokens), the same code path as
`ensemble train-experts` (ensemble.training.adapters.init_adapter + ensemble.training.trainer.run_training,
i.e. the HF Trainer with AdamW). For each micro-batch size, with and without gradient checkpointing, each
method runs in its own process and reports:

- trainable parameters,
- tokens/s over optimizer steps 2..--steps (each micro-batch × grad-accum × seq tokens; step 1 is warm-up),
- peak memory: on CPU the process's peak RSS above what the imported libraries hold (the peak mark is reset
  after the imports and before the model is built), on CUDA torch.cuda.max_memory_allocated (and the GPU
  runs also add fp16).

Ratios are against full fine-tuning at the same setting, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SIZES = {
    "124m": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024},
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 1000, "n_positions": 256},
}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def one(args: argparse.Namespace) -> dict:
    """Run one configuration in this process; returns its figures."""
    import tempfile
    from types import SimpleNamespace

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ensemble.training.adapters import init_adapter
    from ensemble.training.config import TrainParams
    from ensemble.training.dataset import LMDataset, Sample
    from ensemble.training.runtime import resolve_precision
    from ensemble.training.trainer import run_training

    torch.set_num_threads(args.threads)
    prec = resolve_precision(args.precision)
    cuda = prec.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base_mem = _status("VmRSS")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**SIZES[args.size]))
    params = TrainParams(
        method="freeze" if args.method == "freeze" else "lora",
        max_steps=args.steps,
        micro_batch_size=args.mb,
        grad_accum=args.grad_accum,
        block_size=args.seq,
        warmup_steps=0,
        precision=args.precision,
        gradient_checkpointing=bool(args.gc),
        learning_rate=1e-4,
    )
    if args.method == "full":
        trainable = sum(p.numel() for p in model.parameters())
        total = trainable
    else:
        model, info = init_adapter(model, params)
        trainable, total = info.trainable_params, info.total_params
    n = args.mb * args.grad_accum * args.steps
    g = torch.Generator().manual_seed(1)
    vocab = SIZES[args.size]["vocab_size"]
    samples = [Sample(torch.randint(0, vocab, (args.seq,), generator=g).tolist(), [True] * args.seq) for _ in range(n)]
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    timer = StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _, out = run_training(
            model,
            SimpleNamespace(pad_token_id=0),
            LMDataset(samples),
            None,
            params,
            prec,
            Path(tmp),
            task=args.method,
            callbacks=[timer],
            save_checkpoints=False,
        )
        wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if cuda else _status("VmHWM")
    return {
        "method": args.method,
        "mb": args.mb,
        "gc": bool(args.gc),
        "precision": args.precision,
        "trainable": trainable,
        "total": total,
        # The first optimizer step carries one-off setup; the rate is over the steps after it.
        "tokens_per_s": (len(timer.times) - 1)
        * args.mb
        * args.grad_accum
        * args.seq
        / (timer.times[-1] - timer.times[0]),
        "peak_bytes": peak - base_mem,
        "wall_s": wall,
        "steps": out.global_step,
        "device": prec.device,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per run (the first is not timed)")
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (stable figures on a busy machine)"
    )
    ap.add_argument("--micro-batch", type=int, nargs="+", default=[1])
    ap.add_argument("--size", choices=sorted(SIZES), default="124m")
    ap.add_argument("--precision", nargs="+", default=None, help="default: fp32 (CPU) or fp32 fp16 (GPU)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # method: run one configuration in this process
    ap.add_argument("--mb", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--gc", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.method = args.one
        args.precision = args.precision[0]
        print(json.dumps(one(args)))
        return

    import torch

    precisions = args.precision or (["fp32", "fp16"] if torch.cuda.is_available() else ["fp32"])
    rows = []
    for precision in precisions:
        for mb in args.micro_batch:
            for gc in (0, 1):
                for method in ("full", "lora", "freeze"):
                    cmd = [sys.executable, __file__, "--one", method, "--mb", str(mb), "--gc", str(gc)]
                    cmd += [
                        "--steps",
                        str(args.steps),
                        "--grad-accum",
                        str(args.grad_accum),
                        "--seq",
                        str(args.seq),
                    ]
                    cmd += ["--threads", str(args.threads), "--size", args.size, "--precision", precision]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode:
                        sys.exit(f"{method} mb={mb} gc={gc} {precision} failed:\n{proc.stderr[-3000:]}")
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(
                        f"  ran {method:<6} {precision} mb={mb} gc={gc}: {row['tokens_per_s']:.0f} tok/s, "
                        f"{row['peak_bytes'] / 2**20:.0f} MiB, {row['wall_s']:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    device = rows[0]["device"]
    mem = "peak CUDA memory allocated" if device.startswith("cuda") else "peak RSS above the imported libraries"
    print(f"\n{args.size} GPT-2, seq {args.seq}, grad-accum {args.grad_accum}, {args.steps} steps, {device}")
    print(f"memory: {mem}; tok/s over steps 2..{args.steps}")
    print(
        f"{'precision':<9} {'mb':>2} {'ckpt':<4} {'method':<7} {'trainable':>12} {'%':>7} {'tok/s':>8} "
        f"{'MiB':>7} | {'tok/s ×full':>11} {'memory ×full':>12} {'trainable ×full':>15}"
    )
    full = {(r["precision"], r["mb"], r["gc"]): r for r in rows if r["method"] == "full"}
    for r in rows:
        f = full[(r["precision"], r["mb"], r["gc"])]
        print(
            f"{r['precision']:<9} {r['mb']:>2} {'on' if r['gc'] else 'off':<4} {r['method']:<7} "
            f"{r['trainable']:>12,} {100 * r['trainable'] / r['total']:>6.2f}% {r['tokens_per_s']:>8.0f} "
            f"{r['peak_bytes'] / 2**20:>7.0f} | {r['tokens_per_s'] / f['tokens_per_s']:>11.2f} "
            f"{r['peak_bytes'] / f['peak_bytes']:>12.2f} {r['trainable'] / f['trainable']:>15.4f}"
        )


if __name__ == "__main__":
    main()
