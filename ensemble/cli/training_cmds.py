"""Training commands: `pretrain-base` and `train-experts`."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app, state


def _stdout_to_stderr() -> contextlib.AbstractContextManager:
    """DeepSpeed logs to stdout (even its import-time notice); stdout carries only the product."""
    return contextlib.redirect_stdout(sys.stderr)


@app.command("pretrain-base")
def pretrain_base_cmd(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option("--preset", help="tiny (minutes on a CPU) | small (for a GPU)")] = "tiny",
    force: Annotated[bool, typer.Option("--force", help="train again even if <work_dir>/base exists")] = False,
) -> None:
    """Train a tokenizer and a small GPT-2 on the corpus into <work_dir>/base (the offline base model)."""
    from ..training.pretrain import pretrain_base

    st = state(ctx)
    with _stdout_to_stderr():
        path = pretrain_base(st.project(), preset=preset, progress=st.progress(), force=force)
    if not st.quiet:
        print(f"base model ready in {path}; next: ensemble train-experts topics.yaml", file=sys.stderr)


@app.command("train-experts")
def train_experts_cmd(
    ctx: typer.Context,
    topics: Annotated[Path, typer.Argument(help="topics.yaml: the experts, their queries, training settings")],
    only: Annotated[
        list[str] | None, typer.Option("--only", metavar="NAME", help="train only this topic (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="retrain experts that are already trained")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the expert manifests (with each topic's data report) as JSON")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="refuse (exit 2) when a topic has too few passages or shares most with another topic"
        ),
    ] = False,
) -> None:
    """Retrieve each topic's passages, build its dataset and train its adapter on the shared base.

    Several GPUs: `deepspeed --no_local_rank --num_gpus N -m ensemble train-experts topics.yaml` (or torchrun)
    with `deepspeed: zero2` in topics.yaml; the launcher's environment tells each process its rank."""
    from ..training.experts import train_experts

    st = state(ctx)
    with _stdout_to_stderr():
        manifests = train_experts(
            st.project(), topics, only=only or None, force=force, progress=st.progress(), strict=strict
        )
    if os.environ.get("RANK", "0") != "0":
        return
    if as_json:
        rows = [{**m.model_dump(mode="json"), "path": m.path} for m in manifests]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    if not st.quiet:
        for m in manifests:
            print(
                f"{m.name:<12} {m.method:<6} validation perplexity {m.val_perplexity_before:8.2f} → "
                f"{m.val_perplexity_after:8.2f}  {m.steps:>5} steps  {m.wall_seconds:7.1f} s  "
                f"{m.trainable_params:,} trainable",
                file=sys.stderr,
            )
