"""Shared fixtures: an isolated working directory and a CLI runner that goes through the real error edge."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import extras
import pytest

REPO = Path(__file__).resolve().parents[1]

extras.hide(extras.hidden())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "extra(module): needs an optional extra (elasticsearch, deepspeed); skips without"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("extra"):
        extras.require(marker.args[0])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A test that imports an absent extra without saying so still skips, with the reason, instead of failing."""
    try:
        return (yield)
    except ModuleNotFoundError as e:
        module = extras.missing_extra(e)
        if module is None:
            raise
        pytest.skip(extras.reason(module))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(
    *args: str, cwd: Path | None = None, input: str | None = None, env: dict | None = None, timeout: float = 600
) -> CliResult:
    """Run `python -m ensemble ARGS` in a subprocess, exactly as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "ensemble", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli
