"""benchmarks/gpu_check.py runs green on a CPU: what the device cannot do is skipped with the reason, the rest
passes, and every line is JSON."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture
def gpu_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~25 s: pretrains a tiny base, trains six experts, composes
def test_gpu_check_runs_green_on_a_cpu(gpu_check, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.get_num_threads()
    try:
        assert gpu_check.main(["--steps", "2", "--rows", "16", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(before)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    checks, summary = lines[:-1], lines[-1]
    assert summary["summary"] and summary["failed"] == [] and summary["checks"] == len(checks)
    ok = {(c["check"], c.get("precision"), c.get("zero2"), c.get("sampling")) for c in checks if c["status"] == "ok"}
    assert ("train", "fp32", False, None) in ok and ("train", "bf16", False, None) in ok
    assert ("compose", "fp32", None, "greedy") in ok and ("compose", "fp32", None, "sampled") in ok
    assert [c["where"] for c in checks if c["check"] == "overflow" and c["status"] == "ok"] == ["compose", "training"]
    skipped = [c for c in checks if c["status"] == "skipped"]
    assert {c["precision"] for c in skipped if c["check"] == "train" and not c["zero2"]} == {"fp16"}
    assert all(c["why"] for c in skipped)
    trained = [c for c in checks if c["check"] == "train" and c["status"] == "ok"]
    assert all(c["finite"] and c["released"] and c["trained_dtype"] == "float32" for c in trained)
    [sampler] = [c for c in checks if c["check"] == "sampler"]
    assert sampler["rows"] == 16 and 0 < sampler["sampler_share"] < 1
