"""The Elasticsearch backend against a live server: the shared retrieval contract
(tests/retrieval/contract.py), same ranking as the embedded backend, incremental re-index, alias swap, and
the error texts the offline tests only imitate.

Runs when ENSEMBLE_ES_URL points at an Elasticsearch 9 with analysis-nori, for example

    docker compose -f docker-compose.es.yml up -d --build
    ENSEMBLE_ES_URL=http://127.0.0.1:9200 pytest tests/es -m es

Each test works under its own index name and deletes what it made.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.es,
    pytest.mark.skipif(
        not os.environ.get("ENSEMBLE_ES_URL"),
        reason=(
            "needs a live Elasticsearch: set ENSEMBLE_ES_URL (docker compose -f docker-compose.es.yml up -d --build)"
        ),
    ),
]

pytest.importorskip("elasticsearch", reason="the es extra is not installed: pip install 'expert-ensemble[es]'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "retrieval"))  # where contract.py lives

from contract import *  # noqa: E402, F403  (the shared backend contract, run against the live server)
from contract import hand_score  # noqa: E402

import ensemble  # noqa: E402
from ensemble.config.project import ProjectConfig  # noqa: E402
from ensemble.core.errors import BackendError  # noqa: E402
from ensemble.retrieval import elastic_template as tpl  # noqa: E402
from ensemble.retrieval.base import Hit, open_retriever  # noqa: E402

EXAMPLE_CORPUS = Path(ensemble.__file__).parent / "examples" / "hamkke" / "corpus"

# (query, theme): the example project's kind of searches, topic queries with the theme 함께 and plain ones.
QUERIES: list[tuple[str, str | None]] = [
    ("가족 저녁 식탁", "함께"),
    ("할머니와 손주", "함께"),
    ("친구와 우정", "함께"),
    ("학교 친구 편지", None),
    ("마을 이웃 골목", "함께"),
    ("공동체 도움", None),
    ("산과 바다 계절", "함께"),
    ("나무 심기", None),
    ("일터 동료 협동", "함께"),
    ("명절 음식 밥상", "함께"),
    ("김장 송편 떡국", None),
    ("생일 잔치", "함께"),
]


@pytest.fixture
def live(tmp_path):
    """The example corpus copied, and two projects over it: embedded, and Elasticsearch under a new name."""
    shutil.copytree(EXAMPLE_CORPUS, tmp_path / "corpus")
    name = f"ensemble-test-{uuid.uuid4().hex[:12]}"
    base = {"corpus": ["corpus/"], "passages": {"max_chars": 400}, "work_dir": ".ensemble"}
    es_cfg = ProjectConfig.model_validate(
        {**base, "index": {"backend": "elasticsearch", "analyzer": "nori", "elasticsearch": {"index": name}}}
    ).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")
    emb_cfg = ProjectConfig.model_validate({**base, "index": {"backend": "embedded", "analyzer": "nori"}})
    emb_cfg = emb_cfg.with_base_dir(tmp_path, tmp_path / "ensemble.yaml")
    yield es_cfg, emb_cfg, tmp_path
    _cleanup(es_cfg, name)


@pytest.fixture
def open_backend(tmp_path):
    """The contract's fixture: one live index (fresh name), opened as often as the test likes."""
    name = f"ensemble-test-{uuid.uuid4().hex[:12]}"
    cfg = ProjectConfig.model_validate(
        {"index": {"backend": "elasticsearch", "analyzer": "nori", "elasticsearch": {"index": name}}}
    ).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")
    yield lambda create=True, rebuild=False: open_retriever(cfg, create=create, rebuild=rebuild)
    _cleanup(cfg, name)


def _cleanup(cfg: ProjectConfig, name: str) -> None:
    from ensemble.retrieval.elastic import connect

    conn = connect(cfg)
    try:
        listing = conn.client.indices.get_alias(index=f"{name}-*").body
        for index in listing:  # by name: clusters refuse wildcard deletes by default
            conn.client.indices.delete(index=index, ignore_unavailable=True)
        conn.client.options(ignore_status=404).indices.delete_index_template(name=name)
    finally:
        conn.close()


def _build(cfg: ProjectConfig, **kw):
    from ensemble.retrieval.build import build_index

    return build_index(cfg, **kw)


def _ties(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)


def _assert_same_top(emb: list[Hit], es: list[Hit], k: int, label: str) -> None:
    """Same top-k ids, comparing groups of equal scores as sets (engines break ties by internal order)."""
    detail = f"{label}\n embedded: {[(h.id, round(h.score, 4)) for h in emb[:k]]}\n elastic:  " + str(
        [(h.id, round(h.score, 4)) for h in es[:k]]
    )
    assert min(len(emb), k) == min(len(es), k), detail
    if not emb:
        return

    def split(hits: list[Hit]) -> tuple[set[str], set[str], set[str]]:
        cut = hits[min(k, len(hits)) - 1].score
        sure = {h.id for h in hits[:k] if h.score > cut and not _ties(h.score, cut)}
        edge_all = {h.id for h in hits if _ties(h.score, cut)}
        edge_top = {h.id for h in hits[:k]} - sure
        return sure, edge_all, edge_top

    sure_a, edge_all_a, edge_top_a = split(emb)
    sure_b, edge_all_b, edge_top_b = split(es)
    assert sure_a == sure_b, detail
    assert edge_top_a <= edge_all_b and edge_top_b <= edge_all_a, detail
    for x, y in zip(emb[:k], es[:k], strict=False):  # the same BM25: scores agree where the ids do
        if x.id == y.id:
            assert math.isclose(x.score, y.score, rel_tol=0.02), detail


def test_same_top10_as_embedded_backend(live):
    es_cfg, emb_cfg, _ = live
    s_es, s_emb = _build(es_cfg), _build(emb_cfg)
    assert s_es.passages == s_emb.passages > 0
    es, emb = open_retriever(es_cfg), open_retriever(emb_cfg)
    try:
        for query, theme in QUERIES:
            a = emb.search(query, theme=theme, k=30)
            b = es.search(query, theme=theme, k=30)
            _assert_same_top(a, b, 10, f"query={query!r} theme={theme!r}")
    finally:
        es.close()
        emb.close()


def test_incremental_reindex(live):
    es_cfg, _, root = live
    first = _build(es_cfg)
    assert first.added == first.documents > 2 and first.unchanged == 0
    again = _build(es_cfg)
    assert (again.added, again.updated, again.deleted, again.unchanged) == (0, 0, 0, first.documents)
    assert again.passages == first.passages

    changed = root / "corpus" / "family-01-dinner.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n무지개다리 건너 함께 걸었다.\n", encoding="utf-8")
    (root / "corpus" / "nature-03-sea.txt").unlink()
    third = _build(es_cfg)
    assert (third.added, third.updated, third.deleted) == (0, 1, 1)
    assert third.unchanged == first.documents - 2
    r = open_retriever(es_cfg)
    try:
        hashes = r.doc_hashes()
        assert "nature-03-sea" not in hashes and len(hashes) == first.documents - 1
        top = r.search("무지개다리", k=1)
        assert top and top[0].doc_id == "family-01-dinner"
        assert r.passage_count() == third.passages
    finally:
        r.close()


def test_rebuild_swaps_alias_only_on_commit(live):
    from ensemble.corpus.types import Document, Passage
    from ensemble.retrieval.elastic import ElasticRetriever, connect

    es_cfg, _, _ = live
    full = _build(es_cfg).passages
    alias = es_cfg.index.elasticsearch.index
    conn = connect(es_cfg)
    try:
        old = sorted(conn.client.indices.get_alias(name=alias).body)
        r = ElasticRetriever.open(es_cfg, rebuild=True)
        d = Document("only", "새로 만든 색인", None, "only.txt", "h")
        r.upsert([(d, [Passage("only#0", "only", 0, "새로 만든 색인")])])
        r.checkpoint()
        assert conn.client.count(index=alias).body["count"] == full  # readers still see the old index
        r.commit()
        assert sorted(conn.client.indices.get_alias(name=alias).body) == [r.target] != old
        assert conn.client.count(index=alias).body["count"] == 1
        assert not conn.client.indices.exists(index=old[0])
        r.close()
    finally:
        conn.close()


def test_adverb_keeping_analyzer_on_the_server(live):
    from ensemble.retrieval.elastic import analyze_remote

    es_cfg, _, _ = live
    text = "우리는 함께 아름다운 노래를 불렀다"
    plain = analyze_remote(es_cfg, text, "nori")
    adv = analyze_remote(es_cfg, text, "nori_adv")
    assert "함께" not in plain and "함께" in adv  # 함께 is an adverb (MAG)
    assert "노래" in plain
    assert analyze_remote(es_cfg, "Running dogs", "english") == ["run", "dog"]


def test_coarse_stop_tags_are_rejected_with_our_message(live):
    """The assumption behind the offline error test: Elasticsearch 9 refuses E/J, and the message maps."""
    from ensemble.retrieval.elastic import connect

    es_cfg, _, _ = live
    name = f"{es_cfg.index.elasticsearch.index}-coarse"
    settings = tpl.index_settings("nori")
    settings["index"]["analysis"]["filter"]["ensemble_nori_pos"]["stoptags"] = ["E", "J", "MAG"]
    conn = connect(es_cfg)
    try:
        with pytest.raises(BackendError, match="rejects a part-of-speech stop tag"):
            with conn.errors("creating a test index"):
                conn.client.indices.create(index=name, settings=settings, mappings=tpl.index_mappings("nori"))
    finally:
        conn.client.options(ignore_status=404).indices.delete(index=name)
        conn.close()


def _explained(node: dict, description: str) -> list[float]:
    """Values of every node of an `_explain` tree with this description."""
    found = [float(node["value"])] if node.get("description") == description else []
    return found + [v for d in node.get("details", []) for v in _explained(d, description)]


def test_bm25_boost_is_k1_plus_one(loaded):
    """Elasticsearch's BM25 (LegacyBM25Similarity) reports scores times k1 + 1, as a boost: `Hit.score`, the
    embedded backend and the contract's hand-computed scores all assume it."""
    k1 = ProjectConfig().index.k1
    hit = loaded.search("가족", k=1)[0]
    body = loaded._client.explain(index=loaded.target, id=hit.id, query={"match": {"text": "가족"}}).body
    assert body["matched"], body
    boosts = _explained(body["explanation"], "boost")
    assert boosts and all(b == pytest.approx(k1 + 1) for b in boosts), body["explanation"]
    assert float(body["explanation"]["value"]) == pytest.approx(hit.score, rel=1e-5)
    assert hit.score == pytest.approx(hand_score("가족", hit.id), rel=1e-5)
