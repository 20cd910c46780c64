"""`ensemble evaluate`: a table of quality measures on stdout (or JSON); notes and progress on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..evaluation.run import PRECISION
from .app import app, state


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _i(x: int | None) -> str:
    return "–" if x is None else str(x)


def _table(report: Any) -> Any:
    from rich.table import Table

    o = report.overall
    table = Table(title=report.title or report.document, show_footer=True, header_style="bold")
    ranked = o.sections_with_expert
    own = f"{o.own_expert_first}/{ranked} 1st" if ranked else "–"
    columns: list[tuple[str, str, str]] = [
        ("#", "", "right"),
        ("section", "overall", "left"),
        ("expert", "", "left"),
        ("chars", str(o.chars), "right"),
        ("sent.", str(o.sentences), "right"),
        ("distinct-2", _f(o.distinct_2), "right"),
        ("rep-2", _pct(o.rep_2), "right"),
        ("rep-4", _pct(o.rep_4), "right"),
        ("rep. sent.", _pct(o.repeated_sentences), "right"),
        ("copy", _pct(o.copy_rate), "right"),
        ("longest copy", _i(o.longest_copy_chars), "right"),
        ("best expert", "", "left"),
        ("own rank", own, "right"),
        ("ppl base", _f(o.perplexity, 1), "right"),
        ("ppl expert", _f(o.expert_perplexity, 1), "right"),
    ]
    for name, footer, justify in columns:
        table.add_column(name, footer=footer, justify=justify)  # type: ignore[arg-type]
    for s in report.sections:
        table.add_row(
            str(s.number),
            s.heading,
            s.expert or "–",
            str(s.chars),
            str(s.sentences),
            _f(s.distinct_2),
            _pct(s.rep_2),
            _pct(s.rep_4),
            _pct(s.repeated_sentences),
            _pct(s.copy_rate),
            _i(s.longest_copy_chars),
            s.best_expert or "–",
            _i(s.own_expert_rank),
            _f(s.perplexity, 1),
            _f(s.expert_perplexity, 1),
        )
    return table


def _write_html(st: Any, report: Any, outline: Path | None, path: Path) -> None:
    from ..core.errors import EnsembleError
    from ..evaluation.html_report import load_context, render_html, write_html

    context = load_context(st.project(), outline, [s.heading for s in report.sections])
    try:
        write_html(path, render_html(report.to_dict(), context))
    except OSError as e:
        raise EnsembleError(f"cannot write the HTML report ({e.strerror or e})", path=path) from None
    if not st.quiet:
        print(f"html report: {path}", file=sys.stderr)


@app.command()
def evaluate(
    ctx: typer.Context,
    document: Annotated[Path, typer.Argument(help="the markdown document `ensemble compose` wrote")],
    outline: Annotated[
        Path | None,
        typer.Option("--outline", help="the outline.yaml it was written from: names each section's expert"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the full report as JSON instead of a table")] = False,
    perplexity: Annotated[
        bool,
        typer.Option("--perplexity/--no-perplexity", help="score each section under the base model (and its expert)"),
    ] = True,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="also write the report as one self-contained HTML page (charts, relevance heat map, the experts' "
            "training curves, sources per paragraph when present)",
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="number format of the perplexity scoring: fp32 (the default: figures compare across machines), "
            "bf16 or fp16 (half the memory on a GPU), auto (compose's choice for this machine)",
        ),
    ] = PRECISION,
) -> None:
    """Measure a document per section: length, distinct-n and rep-n, copy rate against the corpus,
    which expert's data each section matches best, and perplexity under the base and the section's expert.

    A measure whose artifact is missing (no index, no trained experts, no base model) is skipped with a note
    on stderr; the rest is still reported."""
    from ..evaluation import evaluate as evaluate_document

    st = state(ctx)
    progress = st.progress()
    report = evaluate_document(
        st.project(), document, outline_path=outline, perplexity=perplexity, precision=precision, progress=progress
    )
    if not st.quiet:
        for note in report.notes:  # one line each, however narrow the terminal
            print(f"note: {note}", file=sys.stderr)
    if html is not None:
        _write_html(st, report, outline, html)
    if json_out:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)
    console.print(_table(report))
    o = report.overall
    if o.longest_copy_text:
        console.print(f"longest copied span ({o.longest_copy_chars} chars): {o.longest_copy_text}")
