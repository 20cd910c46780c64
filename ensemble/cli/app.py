"""The typer app, its global options and the one error edge: EnsembleError → one stderr line, exit 2."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from ..core.errors import EnsembleError

try:  # typer >= 0.29 vendors its own copy of click
    from typer._click import exceptions as _tclick

    _CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException, _tclick.ClickException)
    _ABORTS: tuple[type[Exception], ...] = (click.exceptions.Abort, typer.Abort)
    _NO_ARGS: tuple[type[Exception], ...] = (_tclick.NoArgsIsHelpError,)
except ImportError:  # pragma: no cover - older typer
    _CLICK_ERRORS = (click.ClickException,)
    _ABORTS = (click.exceptions.Abort,)
    _NO_ARGS = ()

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


@dataclass
class CliState:
    config: Path
    debug: bool
    quiet: bool
    config_given: bool = False

    def project(self):
        """The ensemble.yaml in effect (loaded on demand so commands like `analyze` need none)."""
        from ..config import load_project

        return load_project(self.config)

    def progress(self):
        from .progress import make_progress

        return make_progress(quiet=self.quiet)


def _debug_requested(args: list[str]) -> bool:
    return "--debug" in args


class _Group(TyperGroup):
    def main(self, args: list[str] | None = None, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        debug = _debug_requested(argv)
        kw["standalone_mode"] = False
        try:
            rv = super().main(argv, *a, **kw)
        except EnsembleError as e:
            if debug:
                traceback.print_exc()
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except _NO_ARGS as e:
            print(e.ctx.get_help() if getattr(e, "ctx", None) else str(e), file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except _ABORTS:
            print("error: aborted", file=sys.stderr)
            sys.exit(130)
        except _CLICK_ERRORS as e:
            # click's usage errors span several lines; we promise one.
            msg = e.format_message().replace("\n", " ")
            ctx_cmd = f" (see 'ensemble {e.ctx.info_name} --help')" if getattr(e, "ctx", None) and e.ctx.parent else ""
            print(f"error: {msg}{ctx_cmd}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            print("error: interrupted; re-run the same command to resume", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as e:  # a bug, not bad input
            if debug:
                traceback.print_exc()
            print(f"internal error: {type(e).__name__}: {e} (re-run with --debug for the traceback)", file=sys.stderr)
            sys.exit(EXIT_INTERNAL)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        sys.exit(0)


app = typer.Typer(
    cls=_Group,
    name="ensemble",
    help="Write one long document with a team of topic experts.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Path = typer.Option(Path("ensemble.yaml"), "--config", "-c", help="project file (ensemble.yaml)"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output on stderr"),
) -> None:
    ctx.obj = CliState(config=config, debug=debug, quiet=quiet)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def bad_input(message: str, *, key: str | None = None) -> EnsembleError:
    return EnsembleError(message, key=key)
