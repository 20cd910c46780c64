"""Fixtures for training tests: a tiny base trained once per session on the support corpus, a project that
uses it, and the stand-in retriever."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from training_support import CORPUS, FakeRetriever, Project

# tests/ is on sys.path under pytest (no __init__.py); a site-packages `tests` package shadows that name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinylm import build_tiny_base  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared machine a contended second thread makes
    each step ~10x slower (OpenMP spin-waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    import torch

    texts = [p for ps in CORPUS.values() for p in ps]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # built before any module-scoped fixture runs
    try:
        return build_tiny_base(tmp_path_factory.mktemp("tinybase") / "base", texts, steps=30)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def fake_retriever(monkeypatch) -> FakeRetriever:
    passages = [(f"{topic}-{i}#0", text) for topic, ps in CORPUS.items() for i, text in enumerate(ps)]
    retriever = FakeRetriever(passages)
    monkeypatch.setattr("ensemble.retrieval.base.open_retriever", lambda cfg, **kw: retriever)
    return retriever


@pytest.fixture
def project(tmp_path, tiny_base) -> Project:
    return Project(tmp_path, tiny_base)
