"""Reliability fixtures: one small project taken through the whole pipeline once per session (tiny base,
build-index, train-experts, compose), kept as templates that each test copies before it breaks it."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Test directories have no __init__.py; make our kit and tests/tinylm.py importable by name.
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from reliability_kit import COMPOSE_SEED, SECTIONS, corpus_texts, ensemble, ok, write_project  # noqa: E402


@dataclass
class Pipeline:
    root: Path
    base: Path
    other_base: Path  # same architecture, different fingerprint: "another base model"
    fresh: Path  # project files only
    indexed: Path  # + work/index
    trained: Path  # + work/experts
    composed: Path  # + work/compose
    essay: str  # the uninterrupted compose output, seed COMPOSE_SEED
    runs: list = field(default_factory=list)  # every Result of the pipeline (for the secret scan)
    seconds: dict = field(default_factory=dict)

    def copy(self, stage: str, dest: Path) -> Path:
        src = {
            "fresh": self.fresh,
            "indexed": self.indexed,
            "trained": self.trained,
            "composed": self.composed,
        }[stage]
        shutil.copytree(src, dest, symlinks=True)
        return dest


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Pipeline:
    from tinylm import build_tiny_base

    root = tmp_path_factory.mktemp("reliability")
    texts = [t for ts in corpus_texts().values() for t in ts]
    base = build_tiny_base(root / "base", texts, steps=20)
    other = root / "other-base"
    shutil.copytree(base, other)
    config = json.loads((other / "config.json").read_text())
    config["ensemble_test_variant"] = 2  # a harmless key: the model loads, its fingerprint differs
    (other / "config.json").write_text(json.dumps(config, indent=2))
    (other / ".ensemble-fingerprint.json").unlink(missing_ok=True)

    runs: list = []
    seconds: dict = {}
    work = write_project(root / "work-project", base)
    # Run from the parent directory with -c: every path in ensemble.yaml must resolve relative to the file.
    cfg = str(Path(work.name) / "ensemble.yaml")
    fresh = root / "fresh"
    shutil.copytree(work, fresh)

    r = ok(ensemble("-c", cfg, "build-index", cwd=root, log=runs))
    seconds["build-index"] = r.seconds
    indexed = root / "indexed"
    shutil.copytree(work, indexed)

    r = ok(ensemble("-c", cfg, "train-experts", str(Path(work.name) / "topics.yaml"), cwd=root, log=runs))
    seconds["train-experts"] = r.seconds
    trained = root / "trained"
    shutil.copytree(work, trained)

    r = ok(ensemble("compose", "outline.yaml", "--seed", str(COMPOSE_SEED), cwd=work, log=runs))
    seconds["compose"] = r.seconds
    assert r.stdout.startswith("# "), r.stdout
    assert all(f"## {s['heading']}" in r.stdout for s in SECTIONS)
    return Pipeline(root, base, other, fresh, indexed, trained, work, r.stdout, runs, seconds)


@dataclass
class BigCorpus:
    """The project with ~3,000 more documents, so build-index works long enough to be killed mid-way."""

    fresh: Path
    reference: Path  # the same, indexed by one uninterrupted run


@pytest.fixture(scope="session")
def big_corpus(pipeline, tmp_path_factory) -> BigCorpus:
    root = tmp_path_factory.mktemp("bigcorpus")
    fresh = pipeline.copy("fresh", root / "fresh")
    rows = [
        {"id": f"bulk-{topic}-{i:04d}", "title": topic, "text": text}
        for topic, texts in corpus_texts(per_topic=1000, seed=1).items()
        for i, text in enumerate(texts)
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    (fresh / "corpus" / "bulk.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    reference = shutil.copytree(fresh, root / "reference")
    ok(ensemble("build-index", cwd=reference))
    return BigCorpus(fresh, reference)
