"""Fixtures for compose tests: a tiny base trained once per session on a templated Korean corpus, experts made
directly on it (random LoRA adapters, perturbed upper blocks), and a project directory that uses them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests/` is on sys.path under pytest (its conftest has no package); a site-packages `tests` shadows it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compose_kit import CORPUS, Project, write_expert  # noqa: E402
from tinylm import build_tiny_base  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    texts = [p for ps in CORPUS.values() for p in ps]
    return build_tiny_base(tmp_path_factory.mktemp("composebase") / "base", texts, steps=40)


@pytest.fixture(scope="session")
def expert_store(tmp_path_factory, tiny_base) -> Path:
    """A work_dir holding three experts: family and friends (LoRA), nature (freeze)."""
    work = tmp_path_factory.mktemp("composeexperts") / "work"
    write_expert(work, tiny_base, "family", "lora", 1, CORPUS["family"])
    write_expert(work, tiny_base, "friends", "lora", 2, CORPUS["friends"])
    write_expert(work, tiny_base, "nature", "freeze", 3, CORPUS["nature"])
    return work


@pytest.fixture
def project(tmp_path, tiny_base, expert_store) -> Project:
    return Project(tmp_path, tiny_base, expert_store)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
