"""The shared retrieval contract (tests/retrieval/contract.py) run against the Elasticsearch backend on the
fake server.

The fake answers `match`/`bool` queries with this project's own analyzers and Lucene's BM25 (`_Scorer` in
es_fake.py): an emulation of Elasticsearch written here, not Elasticsearch. Passing shows that what the
backend sends, and how it reads the answers, keeps the contract under those assumed semantics;
test_es_contract.py runs the same suite against a real server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("elasticsearch", reason="the es extra is not installed: pip install 'expert-ensemble[es]'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "retrieval"))  # where contract.py lives

from contract import *  # noqa: E402, F403  (the backend contract, run here against the fake server)
from es_fake import make_config  # noqa: E402

from ensemble.retrieval.base import open_retriever  # noqa: E402


@pytest.fixture
def open_backend(fake_es, tmp_path):
    cfg = make_config(tmp_path, fake_es.url, es={"bulk_chunk": 500})
    return lambda create=True, rebuild=False: open_retriever(cfg, create=create, rebuild=rebuild)
