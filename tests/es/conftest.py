"""Fixtures for the Elasticsearch backend tests: a fake server on 127.0.0.1 and a project pointing at it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("elasticsearch", reason="the es extra is not installed: pip install 'expert-ensemble[es]'")

from es_fake import FakeES  # noqa: E402

from ensemble.config.project import ProjectConfig  # noqa: E402
from ensemble.retrieval import elastic  # noqa: E402

ES_ENV = ("ENSEMBLE_ES_URL", "ENSEMBLE_ES_API_KEY", "ENSEMBLE_ES_USERNAME", "ENSEMBLE_ES_PASSWORD")


def make_config(tmp_path: Path, url: str, **index: object) -> ProjectConfig:
    es = {"url": url, "index": "passages", "max_retries": 2, "bulk_chunk": 3}
    es.update(index.pop("es", {}))  # type: ignore[arg-type]
    data = {"index": {"backend": "elasticsearch", "elasticsearch": es, **index}}
    return ProjectConfig.model_validate(data).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")


@pytest.fixture
def fake_es(monkeypatch):
    """A fresh fake cluster; the ENSEMBLE_ES_* variables of the real environment are hidden from the code."""
    for var in ES_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(elastic, "BULK_BACKOFF", (0.01, 0.05))
    monkeypatch.setattr(elastic, "TRANSPORT_BACKOFF", (0.01, 0.05))
    server = FakeES().start()
    yield server
    server.stop()


@pytest.fixture
def es_cfg(tmp_path, fake_es):
    return make_config(tmp_path, fake_es.url)


def live_url() -> str | None:
    return os.environ.get("ENSEMBLE_ES_URL") or None
