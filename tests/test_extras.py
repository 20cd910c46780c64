"""Tests that need an optional extra skip, saying which, where it is not installed (simulated by hiding it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import extras
import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDS_EXTRAS = [
    "tests/es",
    "tests/training/test_train_experts.py::test_zero2_deepspeed_on_cpu_single_process",
    "tests/reliability/test_bad_inputs.py::test_bad_input[elasticsearch-unreachable]",
]


def test_missing_extras_skip_with_the_reason():
    env = {**os.environ, extras.HIDE_VAR: "elasticsearch,deepspeed", "OMP_NUM_THREADS": "1"}
    env.pop("ENSEMBLE_ES_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *NEEDS_EXTRAS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert " failed" not in out and " error" not in out, out
    assert "needs the deepspeed extra: pip install -e '.[deepspeed]'" in out, out
    assert "the es extra is not installed" in out and "needs the es extra" in out, out


def test_hiding_an_extra_makes_its_import_fail(monkeypatch):
    monkeypatch.delitem(sys.modules, "deepspeed", raising=False)
    extras.hide(["deepspeed"])
    try:
        assert extras.absent("deepspeed")
        with pytest.raises(ModuleNotFoundError) as e:
            __import__("deepspeed")
        assert extras.missing_extra(e.value) == "deepspeed"
    finally:
        del sys.modules["deepspeed"]


def test_unknown_names_in_the_hide_variable_are_refused():
    with pytest.raises(ValueError, match="torch"):
        extras.hidden({extras.HIDE_VAR: "torch"})
