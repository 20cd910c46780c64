"""`ensemble compose`: the document on stdout (or in --output), progress on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .app import app, state


@app.command()
def compose(
    ctx: typer.Context,
    outline: Path = typer.Argument(..., help="outline.yaml: title, generation defaults, sections"),
    seed: int = typer.Option(0, "--seed", help="same seed + same inputs → the same document"),
    sections: str | None = typer.Option(
        None,
        "--sections",
        help="regenerate only these sections (numbers from 1, e.g. 2,4) with --seed; the others are reused "
        "from the last run of this outline",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="write the document to FILE (atomically) instead of stdout"
    ),
    max_batch: int | None = typer.Option(
        None,
        "--max-batch",
        min=1,
        help="rows per forward pass; every row holds its own KV cache. Default: as many as keep that cache "
        "within a quarter of the model's weights (64 MiB for small models); lower it to save memory, raise "
        "it for speed",
    ),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="print the run report as JSON on stdout instead of the document: per section chars, sentences, "
        "guard rejections, steps, seconds and each paragraph's sources (when the index is built); it holds the "
        "markdown too unless --output is given",
    ),
    sources: bool = typer.Option(
        False,
        "--sources",
        help="footnote every paragraph with the corpus passages it is closest to (BM25 over the index, the "
        "section expert's dataset first) and end the document with a Sources list; needs `ensemble build-index`",
    ),
) -> None:
    """Write the document: each section by its expert, all sections generated together by sentence chaining.

    stdout carries only the markdown document (or, with --json, the JSON report); progress goes to stderr.
    An interrupted run resumes where it stopped when run again."""
    from ..composition import compose as compose_document
    from ..core.artifacts import write_text_atomic

    st = state(ctx)
    progress = st.progress()
    doc = compose_document(
        st.project(),
        outline,
        seed=seed,
        sections=sections,
        progress=progress,
        max_batch=max_batch,
        provenance="footnotes" if sources else "report" if json_out else "off",
    )
    for note in doc.notes:
        progress.log(note)
    if output is not None:
        write_text_atomic(output, doc.markdown)
    reused = len(doc.sections) - len(doc.generated)
    chars = sum(s.stats["chars"] for s in doc.sections)
    progress.log(
        f"{len(doc.sections)} sections, {chars} chars ({len(doc.generated)} generated, {reused} reused) "
        f"in {doc.seconds:.0f} s" + (f"; wrote {output}" if output is not None else "")
    )
    if json_out:
        report = doc.report()
        report.update({"output": str(output)} if output is not None else {"markdown": doc.markdown})
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif output is None:
        sys.stdout.write(doc.markdown)
        sys.stdout.flush()
