"""Command-line interface: each command parses its arguments and calls one library function."""

from . import compose_cmds, evaluate_cmds, project_cmds, retrieval_cmds, training_cmds  # noqa: F401  (registration)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
