"""Command-line interface: each command parses its arguments and calls one library function."""

# Registration order is the order `ensemble --help` lists the commands: the pipeline.
from . import project_cmds, retrieval_cmds, plan_cmds, training_cmds, compose_cmds, evaluate_cmds  # noqa: F401, I001
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
