"""SIGKILL mid-work, then run again: the result equals an uninterrupted run's, and no temp or half-written
file is left visible. Kill points are random but seeded, so a failure reproduces."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from reliability_kit import (
    COMPOSE_SEED,
    ensemble,
    index_orphans,
    index_passages,
    is_pickled,
    manifests_parse,
    ok,
    run_and_kill,
    search_results,
    visible_leftovers,
)


def _no_debris(root: Path) -> None:
    assert visible_leftovers(root, tantivy=False) == []
    assert manifests_parse(root) == []


def _searchable_or_absent(root: Path) -> None:
    """Between a crash and the re-run the index is either the previous one or not there yet: never broken."""
    r = ensemble("search", "가족", "-k", "3", "--json", cwd=root)
    assert r.code in (0, 2), str(r)
    if r.code == 2:
        assert "build-index" in r.stderr and len(r.err_lines) == 1, str(r)


def test_build_index_killed_at_seeded_points_resumes_to_the_same_index(big_corpus, tmp_path):
    rng = random.Random(20261123)
    root = shutil.copytree(big_corpus.fresh, tmp_path / "project")
    work = root / "work"
    # Kill points: shortly after the lock is taken (corpus being read), after the index directory appears
    # (passages being analysed and written) or after the first segment file appears (writing under way).
    events = {
        "locked": lambda: (work / "build-index.lock").exists(),
        "index opened": lambda: (work / "index").is_dir(),
        "segment written": lambda: any((work / "index").glob("*.idx")),
    }
    killed = []
    for _ in range(3):
        name = rng.choice(sorted(events))
        k = run_and_kill("build-index", cwd=root, when=events[name], delay=rng.uniform(0, 0.3))
        if k.killed:
            killed.append(name)
        _searchable_or_absent(root)
    assert killed, "every run finished before its kill point; the corpus is too small to test crashes"
    ok(ensemble("build-index", cwd=root))
    assert index_passages(root) == index_passages(big_corpus.reference)
    assert search_results(root) == search_results(big_corpus.reference)
    assert not (root / "work" / "build-index.lock").exists()
    assert index_orphans(root) == []
    _no_debris(root)


def _rebuild_started(root: Path):
    """True once `--rebuild` has started its scratch index beside the live one."""

    def names() -> set[str]:
        return {p.name for p in (root / "work").iterdir() if not p.name.endswith(".lock")}

    before = names()
    return lambda: names() != before


def test_rebuild_killed_midway_keeps_the_previous_index_searchable(big_corpus, tmp_path):

    rng = random.Random(7)
    root = shutil.copytree(big_corpus.reference, tmp_path / "project")
    before = search_results(root)
    k = run_and_kill("build-index", "--rebuild", cwd=root, when=_rebuild_started(root), delay=rng.uniform(0, 0.5))
    assert k.killed, "the rebuild finished before its kill point"
    assert search_results(root) == before, "the previous index changed"
    ok(ensemble("build-index", "--rebuild", cwd=root))
    assert index_passages(root) == index_passages(big_corpus.reference)
    assert search_results(root) == before
    assert index_orphans(root) == []
    # The rebuild's hidden scratch index is gone once it has been swapped in.
    assert sorted(p.name for p in (root / "work").iterdir()) == ["index"]
    _no_debris(root)


def _dataset(root: Path, name: str) -> list[tuple[str, str]]:
    rows = json.loads((root / "work" / "experts" / name / "dataset" / "passages.json").read_text())["passages"]
    return sorted((r["id"], r["split"]) for r in rows)


def test_train_experts_killed_mid_training_resumes_to_complete_experts(pipeline, tmp_path):
    rng = random.Random(5)
    root = pipeline.copy("indexed", tmp_path / "project")
    # The uninterrupted run printed one line per epoch and expert; kill after one of them, chosen by the seed.
    epoch_lines = sum("epoch" in line for r in pipeline.runs if "train-experts" in r.args for line in r.err_lines)
    assert epoch_lines >= 4
    k = run_and_kill(
        "train-experts",
        "topics.yaml",
        cwd=root,
        after_lines=rng.randint(2, epoch_lines - 1),
        delay=rng.uniform(0, 1),
    )
    assert k.killed, k.stderr
    _no_debris(root)
    # HF Trainer's resumable state (optimizer.pt, rng_state.pth, ...) is pickled: it may exist only under
    # checkpoints/ while an expert trains (read back with weights_only=True), never beside the adapters.
    pickled = [p for p in (root / "work").rglob("*") if p.is_file() and is_pickled(p)]
    assert all("checkpoints" in p.relative_to(root).parts for p in pickled), pickled
    # A killed expert has no manifest (it is written last), so nothing can mistake it for a finished one.
    for d in (root / "work" / "experts").iterdir():
        if (d / "manifest.json").exists():
            assert (d / "adapter" / "adapter_model.safetensors").is_file()

    ok(ensemble("train-experts", "topics.yaml", cwd=root))
    _no_debris(root)
    assert not (root / "work" / "training.lock").exists()
    for name in ("family", "friends"):
        d = root / "work" / "experts" / name
        m = json.loads((d / "manifest.json").read_text())
        ref = json.loads((pipeline.trained / "work" / "experts" / name / "manifest.json").read_text())
        got_rows = json.loads((d / "dataset" / "passages.json").read_text())["passages"]
        ref_rows = json.loads((pipeline.trained / "work" / "experts" / name / "dataset" / "passages.json").read_text())[
            "passages"
        ]
        assert got_rows == ref_rows
        assert m["data"]["dataset_sha256"] == ref["data"]["dataset_sha256"]
        assert m["steps"] == ref["steps"]
        assert m["val_perplexity_after"] < m["val_perplexity_before"], m
        # Resuming restores the optimizer, scheduler and RNG state: the numbers match the uninterrupted run.
        assert m["val_perplexity_after"] == pytest.approx(ref["val_perplexity_after"], rel=1e-2)
        assert not (d / "checkpoints").exists()
    _adapters_load(root, pipeline.base)


def _adapters_load(root: Path, base: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 2, 3, 4]])
    plain = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    with torch.no_grad():
        base_logits = plain(input_ids=ids).logits
    for name in ("family", "friends"):
        model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
        model = PeftModel.from_pretrained(model, str(root / "work" / "experts" / name / "adapter")).eval()
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        assert torch.isfinite(logits).all()
        assert not torch.allclose(logits, base_logits, atol=1e-4), f"{name}: the adapter changes nothing"


def test_compose_killed_midway_resumes_to_the_identical_document(pipeline, tmp_path):
    rng = random.Random(11)
    root = pipeline.copy("trained", tmp_path / "project")
    cache = root / "work" / "compose"

    def first_round_saved() -> bool:
        return any(cache.glob("*/section-*.json"))

    old = root / "essay.md"
    old.write_text("# 지난번 글\n", encoding="utf-8")
    k = run_and_kill(
        "compose",
        "outline.yaml",
        "--seed",
        str(COMPOSE_SEED),
        "--output",
        "essay.md",
        cwd=root,
        when=first_round_saved,
        delay=rng.uniform(0, 1.5),
    )
    _no_debris(root)
    # --output is written whole, by rename: it is the old file or the finished document, never a part.
    assert old.read_text(encoding="utf-8") in ("# 지난번 글\n", pipeline.essay)
    r = ok(ensemble("compose", "outline.yaml", "--seed", str(COMPOSE_SEED), cwd=root))
    assert r.stdout == pipeline.essay, f"killed={k.killed}\n{r.stdout}\n---\n{pipeline.essay}"
    _no_debris(root)
    assert not list(cache.glob("*/*.lock"))


def test_tantivy_temp_files_left_by_a_kill_are_cleaned_up_by_the_next_build(pipeline, tmp_path):
    root = pipeline.copy("indexed", tmp_path / "project")
    stale = root / "work" / "index" / ".tmpAbC123"
    stale.write_bytes(b'{"segments": [')  # what a write cut short by SIGKILL leaves
    ok(ensemble("build-index", cwd=root))
    assert not stale.exists()
    assert visible_leftovers(root) == []
