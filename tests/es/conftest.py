"""Fixtures for the Elasticsearch backend tests: a fake server on 127.0.0.1 and a project pointing at it."""

from __future__ import annotations

import pytest
from es_fake import ES_ENV, FakeES, make_config

from ensemble.retrieval import elastic


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
