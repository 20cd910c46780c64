"""Fixtures for evaluation tests: a small corpus with one vocabulary per topic plus one hand-written passage,
a tiny base trained on it, three experts really trained on their topic's passages (two LoRA, one freeze) and a
built index, all made once per session; and documents with known properties."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# tests/ is on sys.path under pytest (no __init__.py); a site-packages `tests` package shadows that name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval_kit import CORPUS, SOURCE, Project, write_expert  # noqa: E402
from tinylm import build_tiny_base  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP threads spinning against
    other processes make each training step ~30x slower. Restored after this directory's tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, one_torch_thread) -> Path:
    texts = [p for ps in CORPUS.values() for p in ps] + [SOURCE]
    return build_tiny_base(tmp_path_factory.mktemp("evalbase") / "base", texts, steps=60)


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny_base) -> Path:
    """A project with its index built and three trained experts (family, friends: LoRA; nature: freeze)."""
    from ensemble.retrieval.build import build_index

    root = tmp_path_factory.mktemp("evalproject")
    p = Project(root, tiny_base)
    build_index(p.cfg)
    work = p.cfg.work_path
    write_expert(work, tiny_base, "family", "lora", CORPUS["family"])
    write_expert(work, tiny_base, "friends", "lora", CORPUS["friends"])
    write_expert(work, tiny_base, "nature", "freeze", CORPUS["nature"])
    return root


@pytest.fixture
def project(tmp_path, built, tiny_base) -> Project:
    """A fresh copy of the built project (tests may write documents into it)."""
    root = tmp_path / "project"
    shutil.copytree(built, root)
    return Project(root, tiny_base)


@pytest.fixture
def bare(tmp_path) -> Project:
    """A project with a corpus but nothing built: no index, no experts, no base model."""
    return Project(tmp_path / "bare", None)
