"""`ensemble plan`: topics.yaml (on stdout, or in -o) and an outline skeleton drafted from the corpus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app, state


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    theme: Annotated[str, typer.Option("--theme", help="the word every passage must match, e.g. 함께")],
    topics: Annotated[int, typer.Option("--topics", help="number of topics (clusters) to draft")],
    queries: Annotated[int, typer.Option("--queries", help="queries per topic (2-3 terms each)")] = 3,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="passages per query, written as defaults.top_k (default: 500)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="clustering seed: the same seed gives the same plan")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write topics.yaml to FILE instead of stdout")
    ] = None,
    outline: Annotated[
        Path | None, typer.Option("--outline", help="also write an outline skeleton (one section per topic)")
    ] = None,
) -> None:
    """Draft topics (names, titles, queries) by clustering the passages that match the theme; check them with
    the retrieval train-experts runs so that their datasets overlap little."""
    from ..core.artifacts import write_text_atomic
    from ..planning.plan import plan_topics
    from ..training.config import TrainParams

    st = state(ctx)
    k = top_k if top_k is not None else TrainParams().top_k
    plan = plan_topics(st.project(), theme, topics, queries=queries, top_k=k, seed=seed, progress=st.progress())
    if output is not None:
        write_text_atomic(output, plan.topics_yaml())
    else:
        sys.stdout.write(plan.topics_yaml())
    if outline is not None:
        write_text_atomic(outline, plan.outline_yaml())
    if st.quiet:
        return
    for t in plan.topics:
        hits = " ".join(str(n) for n in t.hits_per_query)
        print(f"{t.name} ({t.title}): {t.hits} hits ({hits} per query), {t.passages} passages", file=sys.stderr)
    wrote = [str(p) for p in (output, outline) if p is not None]
    print(
        f"{len(plan.topics)} topics from {plan.theme_passages} passages; overlap (Jaccard) mean "
        f"{plan.mean_overlap:.2f}, max {plan.max_overlap:.2f}" + (f"; wrote {', '.join(wrote)}" if wrote else ""),
        file=sys.stderr,
    )
