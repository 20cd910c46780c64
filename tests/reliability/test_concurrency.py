"""Two runs on one work_dir at once: the second refuses at once with a message naming the lock file and the
holder's pid (`ensemble/core/locks.py::work_lock`), and the first finishes as if it had been alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from reliability_kit import (
    cli_env,
    ensemble,
    index_passages,
    manifests_parse,
    search_results,
    visible_leftovers,
)


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ensemble", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(None),
    )


def _wait_for_lock(lock: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """The pid written in `lock` once the first run holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the first run ended before taking the lock:\n{proc.communicate()[1]}"
        try:
            text = lock.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{lock} never appeared")


def _second_refuses(args: tuple[str, ...], root: Path, lock: Path, holder: int) -> None:
    t0 = time.monotonic()
    r = ensemble(*args, cwd=root)
    assert r.code == 2, str(r)
    assert len(r.err_lines) == 1, str(r)
    line = r.err_lines[0]
    assert str(lock) in line and f"pid {holder}" in line and "wait" in line, line
    assert r.seconds < 30 and time.monotonic() - t0 < 30


def test_two_build_index_runs_one_refuses_the_index_equals_a_single_run(big_corpus, tmp_path):
    root = shutil.copytree(big_corpus.fresh, tmp_path / "project")
    lock = root / "work" / "build-index.lock"
    first = _start("build-index", cwd=root)
    try:
        holder = _wait_for_lock(lock, first)
        assert holder == first.pid
        _second_refuses(("build-index",), root, lock, holder)
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert not lock.exists()
    assert index_passages(root) == index_passages(big_corpus.reference)
    assert search_results(root) == search_results(big_corpus.reference)


def test_a_lock_left_by_a_dead_process_is_taken_over(pipeline, tmp_path):
    root = pipeline.copy("indexed", tmp_path / "project")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / "work" / "build-index.lock").write_text(str(dead.pid))
    r = ensemble("build-index", cwd=root)
    assert r.code == 0, str(r)
    assert not (root / "work" / "build-index.lock").exists()
    assert os.path.exists(root / "work" / "index")


def test_two_train_experts_runs_one_refuses_the_experts_equal_a_single_run(pipeline, tmp_path):
    root = pipeline.copy("indexed", tmp_path / "project")
    lock = root / "work" / "training.lock"
    first = _start("train-experts", "topics.yaml", cwd=root)
    try:
        holder = _wait_for_lock(lock, first)
        assert holder == first.pid
        _second_refuses(("train-experts", "topics.yaml"), root, lock, holder)
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert not lock.exists()
    assert visible_leftovers(root) == [] and manifests_parse(root) == []
    for name in ("family", "friends"):
        got = json.loads((root / "work" / "experts" / name / "dataset" / "passages.json").read_text())
        ref = json.loads((pipeline.trained / "work" / "experts" / name / "dataset" / "passages.json").read_text())
        assert got == ref
        m = json.loads((root / "work" / "experts" / name / "manifest.json").read_text())
        assert m["val_perplexity_after"] < m["val_perplexity_before"]
        assert (root / "work" / "experts" / name / "adapter" / "adapter_model.safetensors").is_file()
