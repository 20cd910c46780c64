"""Retrieval commands: `build-index`, `search`, `analyze`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from .app import app, state

if TYPE_CHECKING:
    from ..retrieval.base import Hit


@app.command("build-index")
def build_index_cmd(
    ctx: typer.Context,
    rebuild: bool = typer.Option(False, "--rebuild", help="index everything again into a fresh index"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable corpus files and lines, with a warning"),
) -> None:
    """Clean the corpus, split it into passages and index them (only changed documents are re-indexed)."""
    from ..retrieval.build import build_index

    st = state(ctx)
    s = build_index(st.project(), rebuild=rebuild, skip_bad=skip_bad, progress=st.progress())
    if not st.quiet:
        print(
            f"indexed {s.documents} documents, {s.passages} passages in {s.seconds:.1f} s "
            f"({s.added} added, {s.updated} updated, {s.deleted} deleted, {s.unchanged} unchanged)",
            file=sys.stderr,
        )


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    query: str = typer.Argument(..., help='what to look for; "" with --theme: the theme alone'),
    theme: str | None = typer.Option(None, "--theme", help="passages must also match this (adverbs kept)"),
    k: int = typer.Option(10, "-k", "--k", help="number of passages"),
    as_json: bool = typer.Option(
        False, "--json", help='one {"id","doc_id","score","text"} object per line (+ "matched" with --explain)'
    ),
    explain: bool = typer.Option(
        False, "--explain", help="show which theme and query terms each passage matched, and each clause's score"
    ),
) -> None:
    """Show the top-k passages for QUERY by BM25."""
    from ..retrieval.build import explain_search, search

    cfg = state(ctx).project()
    explained = explain_search(cfg, query, theme=theme, k=k) if explain else None
    hits = [e.hit for e in explained] if explained is not None else search(cfg, query, theme=theme, k=k)
    if as_json:
        rows = [e.to_dict() for e in explained] if explained is not None else [_row(h) for h in hits]
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("passage", no_wrap=True)
    if explained is not None:
        table.add_column("matched", ratio=1, overflow="fold")
    table.add_column("text", ratio=2, overflow="fold")
    for i, h in enumerate(hits):
        why = [explained[i].summary()] if explained is not None else []
        table.add_row(str(i + 1), f"{h.score:.3f}", h.id, *why, " ".join(h.text.split()))
    console = Console(highlight=False)
    if hits:
        console.print(table)
    else:
        console.print("no passages match", markup=False)


def _row(h: Hit) -> dict[str, Any]:
    return {"id": h.id, "doc_id": h.doc_id, "score": h.score, "text": h.text}


def _default_analyzer(ctx: typer.Context) -> str:
    st = state(ctx)
    if st.config.is_file():
        return st.project().index.analyzer
    return "nori"


@app.command("analyze")
def analyze_cmd(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="text to analyze; '-' reads one text per line from stdin"),
    analyzer: str | None = typer.Option(
        None, "--analyzer", "-a", help="nori, nori_adv, standard, english or russian (default: the project's)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print a JSON array of terms (one per input line)"),
) -> None:
    """Show the terms an analyzer makes of TEXT, as the index sees them."""
    from ..text.analyzers import analyze, analyze_tokens, check_name

    name = check_name(analyzer, key="--analyzer") if analyzer is not None else _default_analyzer(ctx)
    if text == "-":
        for line in sys.stdin:
            terms = analyze(line.rstrip("\r\n"), name)
            print(json.dumps(terms, ensure_ascii=False) if as_json else " ".join(terms), flush=True)
        return
    if as_json:
        print(json.dumps(analyze(text, name), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for col in ("token", "start_offset", "end_offset", "type", "position"):
        table.add_column(col, justify="left" if col in ("token", "type") else "right")
    for t in analyze_tokens(text, name):
        table.add_row(t.term, str(t.start), str(t.end), t.type, str(t.position))
    Console(highlight=False).print(table)
