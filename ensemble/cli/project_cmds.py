"""Project-level commands: `init` and `schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .app import app, state


@app.command()
def init(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="where to write the example project"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty directory, overwriting files"),
    base_model: str = typer.Option(
        None, "--base-model", help="a pretrained causal LM (hub id or directory); training settings to suit it"
    ),
) -> None:
    """Write a runnable example project (config, topics, outline and a Korean sample corpus)."""
    from ..examples import init_project

    dest = init_project(directory, force=force, base_model=base_model)
    if not state(ctx).quiet:
        train = "ensemble train-experts topics.yaml" if base_model else "ensemble pretrain-base"
        print(f"wrote example project to {dest}; next: cd {dest} && ensemble build-index && {train}", file=sys.stderr)


@app.command()
def schema(
    name: str = typer.Argument("all", help="ensemble | topics | outline | all"),
) -> None:
    """Print the JSON Schema of the config files (for editors)."""
    from ..schemas import config_schemas

    schemas = config_schemas()
    if name != "all":
        if name not in schemas:
            from ..core.errors import EnsembleError

            raise EnsembleError(f"unknown schema '{name}'; choose one of: {', '.join(schemas)}, all", key="name")
        schemas = {name: schemas[name]}
        print(json.dumps(schemas[name], ensure_ascii=False, indent=2))
        return
    print(json.dumps(schemas, ensure_ascii=False, indent=2))
