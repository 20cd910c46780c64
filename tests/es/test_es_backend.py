"""What the Elasticsearch backend sends, checked against a fake server on 127.0.0.1 (no real cluster here).

These tests pin the requests (template, index creation, bulk actions, queries, alias swaps) and the backend's
bookkeeping (refreshes, stale passages, incremental hashes); whether a real Elasticsearch ranks the same way
is the job of test_es_contract.py, which needs ENSEMBLE_ES_URL.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("elasticsearch", reason="the es extra is not installed: pip install 'expert-ensemble[es]'")

from es_fake import Index, make_config  # noqa: E402

from ensemble.core.errors import ArtifactError, BackendError, ConfigError  # noqa: E402
from ensemble.corpus.types import Document, Passage  # noqa: E402
from ensemble.retrieval import elastic  # noqa: E402
from ensemble.retrieval import elastic_template as tpl  # noqa: E402
from ensemble.retrieval.base import Hit, index_settings, open_retriever  # noqa: E402
from ensemble.retrieval.elastic import ElasticRetriever, search_body  # noqa: E402

PHYSICAL = re.compile(r"passages-\d{20}")


def doc(doc_id: str, *texts: str, h: str | None = None) -> tuple[Document, list[Passage]]:
    d = Document(doc_id, " ".join(texts), None, f"{doc_id}.txt", h or f"hash-{doc_id}-{len(texts)}")
    return d, [Passage(f"{doc_id}#{i}", doc_id, i, t) for i, t in enumerate(texts)]


CORPUS = [
    doc("a", "together with family", "the family table"),
    doc("b", "friends walk together", "friends laugh"),
    doc("c", "village neighbours help", "the village well", "together at the well"),
]


def build(cfg, docs=CORPUS, **kw) -> None:
    r = ElasticRetriever.open(cfg, create=True, **kw)
    try:
        r.upsert(docs)
        r.commit()
    finally:
        r.close()


def bulk_lines(fake) -> list[dict]:
    return [line for req in fake.calls(None, r"^/_bulk$") for line in req.body]


# -- opening and creating ----------------------------------------------------------------------------------


def test_create_installs_template_then_index_and_sets_alias_on_commit(fake_es, es_cfg):
    r = open_retriever(es_cfg, create=True)
    assert isinstance(r, ElasticRetriever)
    put = fake_es.calls("PUT", r"^/_index_template/passages$")
    assert len(put) == 1
    assert put[0].body == tpl.index_template("passages", "nori")
    created = [c.path.strip("/") for c in fake_es.calls("PUT") if not c.path.startswith("/_")]
    assert len(created) == 2 and PHYSICAL.fullmatch(created[0])
    assert r.target == created[0]
    assert created[1] == f"{r.target}/_mapping"  # the settings it is built with, recorded before any passage
    assert r.recorded_settings() == index_settings(es_cfg)
    assert fake_es.alias_targets("passages") == []  # not visible before commit
    r.upsert(CORPUS[:1])
    r.commit()
    assert fake_es.alias_targets("passages") == [r.target]
    swap = fake_es.calls("POST", r"^/_aliases$")
    assert swap[-1].body == {"actions": [{"add": {"index": r.target, "alias": "passages"}}]}
    r.close()


def test_open_without_create_on_empty_cluster_says_build_index(fake_es, es_cfg):
    with pytest.raises(ArtifactError, match="ensemble build-index"):
        ElasticRetriever.open(es_cfg)


def test_template_carries_project_bm25_and_analyzer(fake_es, tmp_path):
    cfg = make_config(tmp_path, fake_es.url, analyzer="english", k1=0.8, b=0.5)
    ElasticRetriever.open(cfg, create=True).close()
    body = fake_es.calls("PUT", r"^/_index_template/")[0].body
    assert body["template"]["settings"]["index"]["similarity"]["ensemble_bm25"] == {
        "type": "BM25",
        "k1": 0.8,
        "b": 0.5,
    }
    assert body["template"]["mappings"]["properties"]["text"]["analyzer"] == "english"


def test_invalid_index_name_is_a_config_error(fake_es, tmp_path):
    cfg = make_config(tmp_path, fake_es.url, es={"index": "My Passages"})
    with pytest.raises(ConfigError) as e:
        ElasticRetriever.open(cfg, create=True)
    assert e.value.key == "index.elasticsearch.index"
    assert fake_es.requests == []  # refused before any request


def test_env_url_overrides_config(fake_es, tmp_path, monkeypatch):
    cfg = make_config(tmp_path, "http://127.0.0.1:1")
    monkeypatch.setenv("ENSEMBLE_ES_URL", fake_es.url)
    ElasticRetriever.open(cfg, create=True).close()
    assert fake_es.calls("GET", "^/$")


# -- bulk indexing -----------------------------------------------------------------------------------------


def test_bulk_actions_use_passage_ids_and_carry_hash(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    r.upsert(CORPUS)
    lines = bulk_lines(fake_es)
    headers, sources = lines[0::2], lines[1::2]
    assert [h["index"]["_id"] for h in headers] == ["a#0", "a#1", "b#0", "b#1", "c#0", "c#1", "c#2"]
    assert {h["index"]["_index"] for h in headers} == {r.target}
    assert sources[4] == {
        "doc_id": "c",
        "n": 0,
        "text": "village neighbours help",
        "content_hash": "hash-c-3",
    }
    # bulk_chunk: 3 in the test config -> 7 actions in 3 requests
    assert [len(c.body) // 2 for c in fake_es.calls(None, r"^/_bulk$")] == [3, 3, 1]
    r.close()


def test_reindexing_is_idempotent(fake_es, es_cfg):
    build(es_cfg)
    r = ElasticRetriever.open(es_cfg)
    before = r.passage_count()
    r.upsert(CORPUS)
    r.commit()
    assert r.passage_count() == before == 7
    r.close()


def test_incremental_update_drops_stale_passages(fake_es, es_cfg):
    build(es_cfg)
    r = ElasticRetriever.open(es_cfg)
    assert r.doc_hashes() == {"a": "hash-a-2", "b": "hash-b-2", "c": "hash-c-3"}
    n_bulk = len(fake_es.calls(None, r"^/_bulk$"))
    r.upsert([doc("c", "village fair", h="hash-c-new")])
    r.commit()
    new_lines = [line for req in fake_es.calls(None, r"^/_bulk$")[n_bulk:] for line in req.body]
    assert {"delete": {"_index": r.target, "_id": "c#1"}} in new_lines
    assert {"delete": {"_index": r.target, "_id": "c#2"}} in new_lines
    assert r.doc_hashes()["c"] == "hash-c-new"
    assert r.passage_count() == 5
    assert [h.id for h in r.search("well")] == []
    r.close()


def test_same_doc_twice_in_one_session_leaves_no_stale_passages(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    r.upsert([doc("a", "one", "two", "three")])
    r.upsert([doc("a", "only one", h="h2")])
    r.commit()
    assert r.passage_count() == 1
    r.close()


def test_delete_uses_delete_by_query_on_doc_id(fake_es, es_cfg):
    build(es_cfg)
    r = ElasticRetriever.open(es_cfg)
    r.delete(["a", "b"])
    r.commit()
    dbq = fake_es.calls("POST", r"/_delete_by_query$")
    assert dbq[0].body == {"query": {"terms": {"doc_id": ["a", "b"]}}}
    assert dbq[0].params.get("conflicts") == "proceed"
    assert r.passage_count() == 3
    assert set(r.doc_hashes()) == {"c"}
    r.close()


def test_reads_refresh_after_writes(fake_es, es_cfg):
    """Searches, counts and hash listings must see what was just written (the fake hides unrefreshed docs)."""
    r = ElasticRetriever.open(es_cfg, create=True)
    r.upsert(CORPUS)
    assert r.passage_count() == 7
    assert set(r.doc_hashes()) == {"a", "b", "c"}
    r.close()


def test_doc_hashes_pages_through_composite_buckets(fake_es, es_cfg, monkeypatch):
    monkeypatch.setattr(elastic, "PAGE", 2)
    build(es_cfg)
    r = ElasticRetriever.open(es_cfg)
    assert r.doc_hashes() == {"a": "hash-a-2", "b": "hash-b-2", "c": "hash-c-3"}
    aggs = [c.body["aggs"]["docs"]["composite"] for c in fake_es.calls("POST", "_search$") if "aggs" in c.body]
    assert len(aggs) >= 2
    assert aggs[0]["sources"] == [
        {"doc_id": {"terms": {"field": "doc_id"}}},
        {"hash": {"terms": {"field": "content_hash"}}},
    ]
    assert aggs[1]["after"] == {"doc_id": "b", "hash": "hash-b-2"}
    r.close()


def test_doc_with_two_hashes_is_reported_as_changed(fake_es, es_cfg):
    build(es_cfg)
    ix = fake_es.indices[fake_es.alias_targets("passages")[0]]
    ix.docs["a#1"]["content_hash"] = "other"
    ix.visible = {k: dict(v) for k, v in ix.docs.items()}
    r = ElasticRetriever.open(es_cfg)
    assert r.doc_hashes()["a"] == ""
    r.close()


# -- retries and bulk failures -----------------------------------------------------------------------------


def test_rejected_bulk_items_are_retried_alone(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    fake_es.reject_items(2)  # an overloaded node answers 429 for the first two passages
    r.upsert(CORPUS[:1])
    bulks = fake_es.calls(None, r"^/_bulk$")
    assert len(bulks) == 2
    assert [line["index"]["_id"] for line in bulks[1].body[0::2]] == ["a#0", "a#1"]
    assert r.passage_count() == 2
    r.close()


def test_whole_bulk_429_is_retried(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    busy = {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}, "status": 429}
    fake_es.fail("PUT", r"^/_bulk$", 429, busy, times=2)
    r.upsert(CORPUS[:1])
    assert r.passage_count() == 2
    assert len(fake_es.calls(None, r"^/_bulk$")) == 3
    r.close()


def test_bulk_gives_up_after_max_retries(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    fake_es.reject_items(100)
    with pytest.raises(BackendError, match=r"2 bulk action\(s\) failed .*429"):
        r.upsert(CORPUS[:1])
    assert len(fake_es.calls(None, r"^/_bulk$")) == 1 + es_cfg.index.elasticsearch.max_retries
    r.close()


def test_bulk_mapping_error_is_not_retried(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    fake_es.reject_items(1, status=400, etype="document_parsing_exception")
    with pytest.raises(BackendError, match="400 rejected by the fake"):
        r.upsert(CORPUS[:1])
    assert len(fake_es.calls(None, r"^/_bulk$")) == 1
    r.close()


# -- search ------------------------------------------------------------------------------------------------


def test_search_body_with_theme():
    body = search_body("family table", "together", 5)
    assert body["query"] == {
        "bool": {
            "must": [{"match": {"text.adv": "together"}}],
            "should": [{"match": {"text": "family table"}}],
            "minimum_should_match": 1,  # the theme AND at least one query term
        }
    }
    assert body["size"] == 5
    assert body["sort"] == ["_score", {"doc_id": "asc"}, {"n": "asc"}]
    assert body["track_scores"] is True


def test_search_body_without_theme():
    assert search_body("friends", None, 10)["query"] == {"match": {"text": "friends"}}
    # an empty theme is still a required clause (it matches nothing), as in the embedded backend
    assert search_body("friends", "", 10)["query"]["bool"]["must"] == [{"match": {"text.adv": ""}}]


def test_search_body_of_a_blank_query_is_the_theme_alone():
    assert search_body(" ", "together", 10)["query"] == {"bool": {"must": [{"match": {"text.adv": "together"}}]}}


def test_clause_scores_search_each_clause_over_the_hits_only(fake_es, es_cfg):
    build(es_cfg)
    r = ElasticRetriever.open(es_cfg)
    hits = r.search("family friends", theme="together", k=3)
    assert [h.id for h in hits] == ["a#0", "b#0"]
    parts = r.clause_scores([h.id for h in hits], "family friends", theme="together")
    sent = [c.body for c in fake_es.calls("POST", "_search$") if "filter" in str(c.body)]
    assert [b["query"]["bool"]["must"] for b in sent] == [
        [{"match": {"text.adv": "together"}}],
        [{"match": {"text": "family friends"}}],
    ]
    assert all(b["query"]["bool"]["filter"] == [{"ids": {"values": [h.id for h in hits]}}] for b in sent)
    for h in hits:
        assert parts["theme"][h.id] + parts["query"].get(h.id, 0.0) == pytest.approx(h.score, rel=1e-6)
    r.close()


def test_search_sends_bool_query_and_maps_hits(fake_es, es_cfg):
    build(es_cfg)
    r = ElasticRetriever.open(es_cfg)
    hits = r.search("family table", theme="together", k=3)
    req = [c for c in fake_es.calls("POST", "_search$") if "query" in c.body and "bool" in c.body["query"]][-1]
    assert req.path == f"/{r.target}/_search"
    assert req.params["search_type"] == "dfs_query_then_fetch"
    assert req.body["query"]["bool"]["must"] == [{"match": {"text.adv": "together"}}]
    assert req.body["_source"] == ["doc_id", "text"]
    assert hits[0] == Hit(id="a#0", doc_id="a", score=hits[0].score, text="together with family")
    assert hits[0].score > 0
    # the theme is required, and a query term too: b#0 and c#2 hold only the theme, a#1 only the query
    assert [h.id for h in hits] == ["a#0"]
    assert req.body["query"]["bool"]["minimum_should_match"] == 1
    with pytest.raises(ConfigError, match="k must be a positive"):
        r.search("friends", k=0)
    r.close()


# -- rebuild and the alias swap ----------------------------------------------------------------------------


def test_rebuild_swaps_alias_atomically_and_drops_old_index(fake_es, es_cfg):
    build(es_cfg)
    old = fake_es.alias_targets("passages")
    r = ElasticRetriever.open(es_cfg, rebuild=True)
    assert r.target not in old
    assert r.doc_hashes() == {}  # a rebuild starts empty: everything is indexed again
    r.upsert(CORPUS[:2])
    assert fake_es.alias_targets("passages") == old  # searchers still see the old, complete index
    r.commit()
    swap = fake_es.calls("POST", r"^/_aliases$")[-1].body["actions"]
    assert swap == [
        {"remove": {"index": old[0], "alias": "passages"}},
        {"add": {"index": r.target, "alias": "passages"}},
    ]
    assert fake_es.alias_targets("passages") == [r.target]
    assert old[0] not in fake_es.indices
    r.close()
    r2 = ElasticRetriever.open(es_cfg)
    assert r2.target == r.target and r2.passage_count() == 4
    r2.close()


def test_checkpoints_do_not_publish_a_rebuild(fake_es, es_cfg):
    """build-index checkpoints every N passages; only the final commit may move the alias."""
    build(es_cfg)
    old = fake_es.alias_targets("passages")
    r = ElasticRetriever.open(es_cfg, rebuild=True)
    r.upsert(CORPUS[:1])
    r.checkpoint()
    assert fake_es.alias_targets("passages") == old
    r.close()


def test_interrupted_rebuild_is_resumed_not_published(fake_es, es_cfg):
    build(es_cfg)
    old = fake_es.alias_targets("passages")
    r = ElasticRetriever.open(es_cfg, rebuild=True)
    r.upsert(CORPUS[:1])
    r.close()  # e.g. Ctrl-C: build-index closes without commit
    assert fake_es.alias_targets("passages") == old
    r2 = ElasticRetriever.open(es_cfg, rebuild=True)
    assert r2.target == r.target  # the staged index is picked up again
    assert set(r2.doc_hashes()) == {"a"}  # so build-index only sends what is missing
    r2.upsert(CORPUS[1:])
    r2.commit()
    assert fake_es.alias_targets("passages") == [r.target]
    assert r2.passage_count() == 7
    assert list(fake_es.indices) == [r.target]
    r2.close()


def test_first_build_interrupted_is_resumed(fake_es, es_cfg):
    r = ElasticRetriever.open(es_cfg, create=True)
    r.upsert(CORPUS[:1])
    r.close()
    with pytest.raises(ArtifactError):  # nothing published yet
        ElasticRetriever.open(es_cfg)
    r2 = ElasticRetriever.open(es_cfg, create=True)
    assert r2.target == r.target and set(r2.doc_hashes()) == {"a"}
    r2.close()


def test_staged_index_that_no_longer_fits_is_replaced(fake_es, tmp_path):
    r = ElasticRetriever.open(make_config(tmp_path, fake_es.url, analyzer="english"), create=True)
    r.upsert(CORPUS[:1])
    r.close()
    r2 = ElasticRetriever.open(make_config(tmp_path, fake_es.url, analyzer="standard"), create=True)
    assert r2.target != r.target and r.target not in fake_es.indices
    assert r2.doc_hashes() == {}
    r2.close()


def test_swap_also_removes_orphans_of_failed_builds(fake_es, es_cfg):
    build(es_cfg)
    fake_es.indices["passages-00000000000000000001"] = Index({}, {})
    build(es_cfg, rebuild=True)
    assert list(fake_es.indices) == fake_es.alias_targets("passages")


# -- existing indices that do not fit ----------------------------------------------------------------------


def _adopt(fake_es, name, mappings, settings=None):
    fake_es.indices[name] = Index(settings or {}, mappings, {"passages"})


def test_index_without_adv_subfield_asks_for_rebuild(fake_es, es_cfg):
    props = {"doc_id": {"type": "keyword"}, "content_hash": {"type": "keyword"}, "text": {"type": "text"}}
    _adopt(fake_es, "passages-00000000000000000001", {"properties": props})
    with pytest.raises(BackendError, match=r"analyzed with 'standard'.*--rebuild"):
        ElasticRetriever.open(es_cfg)


def test_index_with_other_analyzer_or_bm25_asks_for_rebuild(fake_es, tmp_path):
    build(make_config(tmp_path, fake_es.url, analyzer="english"))
    with pytest.raises(BackendError, match=r"'english', the project asks for 'ensemble_nori'.*--rebuild"):
        ElasticRetriever.open(make_config(tmp_path, fake_es.url, analyzer="nori"))
    with pytest.raises(BackendError, match=r"BM25 k1 is 1\.2, the project asks for 2.*--rebuild"):
        ElasticRetriever.open(make_config(tmp_path, fake_es.url, analyzer="english", k1=2.0))
    ElasticRetriever.open(make_config(tmp_path, fake_es.url, analyzer="english")).close()


def test_concrete_index_under_the_alias_name_is_refused(fake_es, es_cfg):
    _adopt(fake_es, "passages", {})
    fake_es.indices["passages"].aliases.clear()
    with pytest.raises(BackendError, match="is an index, not an alias"):
        ElasticRetriever.open(es_cfg, create=True)


def test_overriding_template_is_detected(fake_es, es_cfg):
    """A user template with a higher priority on the same pattern would silently change the mapping."""
    fake_es.templates["theirs"] = {"index_patterns": ["passages-*"], "priority": 900, "template": {}}
    with pytest.raises(BackendError, match=r"another index template with a priority above 500 matches .passages-\*."):
        ElasticRetriever.open(es_cfg, create=True)
    assert not [n for n in fake_es.indices if PHYSICAL.fullmatch(n)]  # the unusable index was removed


# -- _analyze ----------------------------------------------------------------------------------------------


def test_analyze_remote_sends_the_template_chain(fake_es, es_cfg):
    assert "함께" in elastic.analyze_remote(es_cfg, "함께 걷는 길", "nori_adv")  # the fake runs our analyzers
    body = fake_es.calls("POST", r"^/_analyze$")[0].body
    assert body["text"] == "함께 걷는 길"
    assert body["tokenizer"] == tpl.nori_tokenizer()
    assert body["filter"] == [tpl.nori_pos_filter(True), "nori_readingform", "lowercase"]
    elastic.analyze_remote(es_cfg, "Running dogs", "english")
    assert fake_es.calls("POST", r"^/_analyze$")[1].body == {"text": "Running dogs", "analyzer": "english"}
    with pytest.raises(ConfigError, match="unknown analyzer"):
        elastic.analyze_remote(es_cfg, "x", "klingon")


# -- through build-index -----------------------------------------------------------------------------------


def test_build_index_runs_on_the_backend(fake_es, tmp_path):
    """build-index's own loop (checkpoints, hashes, deletes, rebuild) against the backend, end to end."""
    from ensemble.retrieval.build import build_index, search

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = {
        "family": "저녁 식탁에 가족이 함께 모였다. 밥은 같이 먹어야 맛있다.",
        "friends": "친구와 함께 바닷가를 걸었다. 우정은 오래 간다.",
        "village": "마을 사람들이 골목을 함께 청소했다. 이웃이 서로 돕는다.",
    }
    for name, text in texts.items():
        (corpus / f"{name}.txt").write_text(text, encoding="utf-8")
    cfg = make_config(tmp_path, fake_es.url, es={"index": "hamkke"})
    cfg = cfg.model_copy(update={"corpus": ["corpus/"]}).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")

    first = build_index(cfg, checkpoint_passages=1)
    assert (first.documents, first.added, first.passages) == (3, 3, 3)
    live = fake_es.alias_targets("hamkke")
    assert len(live) == 1
    assert build_index(cfg).unchanged == 3
    (corpus / "friends.txt").unlink()
    (corpus / "family.txt").write_text(texts["family"] + " 할머니도 오셨다.", encoding="utf-8")
    third = build_index(cfg)
    assert (third.updated, third.deleted, third.unchanged, third.passages) == (1, 1, 1, 2)
    assert fake_es.alias_targets("hamkke") == live  # incremental: same index, no swap

    rebuilt = build_index(cfg, rebuild=True, checkpoint_passages=1)
    assert (rebuilt.added, rebuilt.passages) == (2, 2)
    assert fake_es.alias_targets("hamkke") != live and list(fake_es.indices) == fake_es.alias_targets("hamkke")
    assert [h.doc_id for h in search(cfg, "할머니도", k=1)] == ["family"]


def test_build_index_follows_changed_settings(fake_es, tmp_path):
    """Passage settings re-index every document in place; BM25 parameters rebuild (a new index, alias swapped)."""
    from ensemble.retrieval.build import build_index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "long.txt").write_text(" ".join(f"{i}번째 날에 가족이 함께 모였다." for i in range(20)), encoding="utf-8")
    base = make_config(tmp_path, fake_es.url).model_copy(update={"corpus": ["corpus/"]})

    def cfg_with(**update):
        cfg = base.model_copy(update=update) if update else base
        return cfg.with_base_dir(tmp_path, tmp_path / "ensemble.yaml")

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def start(self, *a, **k): ...
        def advance(self, *a, **k): ...
        def end(self, *a, **k): ...
        def log(self, message):
            self.lines.append(message)

    build_index(cfg_with())
    live = fake_es.alias_targets("passages")
    short = cfg_with(passages=base.passages.model_copy(update={"max_chars": 60}))
    log = Log()
    assert build_index(short, progress=log).updated == 1
    assert log.lines == ["index settings changed (passages.max_chars 500 → 60): re-indexing every document"]
    assert fake_es.alias_targets("passages") == live
    texts = [d["text"] for d in fake_es.indices[live[0]].docs.values()]
    assert len(texts) > 1 and max(map(len, texts)) <= 60

    tuned = short.model_copy(update={"index": short.index.model_copy(update={"k1": 0.9})})
    log = Log()
    assert build_index(tuned, progress=log).added == 1
    assert log.lines == ["index settings changed (bm25.k1 1.2 → 0.9): rebuilding the index, as --rebuild does"]
    assert fake_es.alias_targets("passages") != live
    assert elastic.stored_settings(tuned) == index_settings(tuned)


def test_a_persistent_429_gets_one_retry_policy(fake_es, es_cfg):
    """streaming_bulk retries a rejected _bulk; the client must not retry it again inside each of those tries."""
    r = ElasticRetriever.open(es_cfg, create=True)
    busy = {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}, "status": 429}
    fake_es.fail("PUT", r"^/_bulk$", 429, busy, times=-1)
    with pytest.raises(BackendError, match="429"):
        r.upsert(CORPUS[:1])
    assert len(fake_es.calls(None, r"^/_bulk$")) == 1 + es_cfg.index.elasticsearch.max_retries
    r.close()
