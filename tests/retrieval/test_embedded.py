"""The embedded (tantivy) backend: the shared contract, plus what only an on-disk index has to get right."""

from __future__ import annotations

import os

import pytest
from contract import *  # noqa: F403  (the backend contract, run here against the embedded backend)
from contract import CORPUS, document, ids, load, opened

from ensemble.config.project import IndexConfig, ProjectConfig
from ensemble.core.errors import ArtifactError, ConfigError
from ensemble.retrieval.base import open_retriever
from ensemble.retrieval.embedded import EmbeddedRetriever, staging_path


def make_cfg(tmp_path, **index) -> ProjectConfig:
    cfg = ProjectConfig(index=IndexConfig(**index))
    return cfg.with_base_dir(tmp_path, tmp_path / "ensemble.yaml")


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


@pytest.fixture
def open_backend(cfg):
    return lambda create=True, rebuild=False: open_retriever(cfg, create=create, rebuild=rebuild)


def test_index_lives_under_work_dir(loaded, cfg):
    assert isinstance(loaded, EmbeddedRetriever)
    assert (cfg.index_path / "meta.json").is_file()
    assert cfg.index_path == cfg.work_path / "index"


def test_other_bm25_parameters_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="k1=1.2") as e:
        open_retriever(make_cfg(tmp_path, k1=1.5), create=True)
    assert e.value.key == "index.k1"


def test_changing_the_analyzer_asks_for_a_rebuild(tmp_path, open_backend):
    load(open_backend).close()
    other = make_cfg(tmp_path, analyzer="standard")
    with pytest.raises(ArtifactError, match="--rebuild") as e:
        open_retriever(other)
    assert e.value.key == "index.analyzer"
    with opened(lambda **kw: open_retriever(other, **kw), rebuild=True) as r:
        r.upsert([document("en", ["Families eat dinner together."])])
        r.commit()
        assert ids(r.search("family")) == []  # the standard analyzer does not stem
        assert ids(r.search("families")) == ["en#0"]


def test_a_directory_that_is_not_an_index_is_left_alone(tmp_path, cfg):
    cfg.index_path.mkdir(parents=True)
    (cfg.index_path / "notes.txt").write_text("mine")
    for kw in ({"create": True}, {"rebuild": True}):
        with pytest.raises(ArtifactError, match="not an ensemble index"):
            open_retriever(cfg, **kw)
    assert (cfg.index_path / "notes.txt").read_text() == "mine"


def test_passage_without_main_terms_is_still_found_by_its_theme(open_backend):
    with opened(open_backend, create=True) as r:
        r.upsert([document("adverbs", ["그리고 또 아주 정말로."]), document("photo", CORPUS["family-photo"])])
        r.commit()
        assert r.passage_count() == 2
        assert r.search("그리고 또 아주 정말로") == []
        assert ids(r.search("", theme="정말로")) == ["adverbs#0"]  # a theme-only search


def test_uncommitted_writes_are_dropped_on_close(open_backend):
    load(open_backend).close()
    with opened(open_backend) as r:
        r.delete(["family-photo"])
        r.upsert([document("new", ["새로운 문서입니다."])])
    with opened(open_backend) as r:
        assert r.passage_count() == 11 and "new" not in r.doc_hashes()


def test_crashed_rebuild_keeps_the_old_index_and_resumes(open_backend, cfg):
    load(open_backend).close()
    first = {d: CORPUS[d] for d in ("family-photo", "nature-spring")}
    r = open_backend(rebuild=True)
    r.upsert([document(d, t) for d, t in first.items()])
    r.checkpoint()  # durable in the staging directory, not published
    r.upsert([document("work-team", CORPUS["work-team"])])  # never checkpointed: lost in the "crash"
    r.close()
    assert staging_path(cfg.index_path).is_dir()
    with opened(open_backend, create=False) as live:
        assert live.passage_count() == 11
    with opened(open_backend, rebuild=True) as again:
        assert set(again.doc_hashes()) == set(first)  # resumes from the checkpoint
        again.upsert([document("work-team", CORPUS["work-team"])])
        again.commit()
    with opened(open_backend, create=False) as live:
        assert set(live.doc_hashes()) == {*first, "work-team"}
    assert not staging_path(cfg.index_path).exists()


def test_a_swap_interrupted_between_renames_is_finished_on_open(open_backend, cfg):
    load(open_backend).close()
    r = open_backend(rebuild=True)
    r.upsert([document("family-photo", CORPUS["family-photo"])])
    r.checkpoint()
    r.close()
    # The crash window of the swap: live moved aside, staged index not yet moved in.
    old = cfg.index_path.with_name(f".{cfg.index_path.name}.old")
    os.replace(cfg.index_path, old)
    lock = cfg.work_path / "build-index.lock"
    lock.write_text(str(os.getppid()))  # a live build elsewhere may be mid-swap: readers leave it alone
    with pytest.raises(ArtifactError, match="no index"):
        open_backend(create=False)
    assert old.exists()
    lock.unlink()
    with opened(open_backend, create=False) as live:
        assert set(live.doc_hashes()) == {"family-photo"}
    assert not old.exists() and not staging_path(cfg.index_path).exists()


def test_a_second_writer_is_refused_while_one_writes(open_backend):
    with opened(open_backend, create=True) as a, opened(open_backend) as b:
        a.upsert([document("x", ["첫 번째 문서."])])
        with pytest.raises(ArtifactError, match="another process"):
            b.upsert([document("y", ["두 번째 문서."])])
        a.commit()
        b.upsert([document("y", ["두 번째 문서."])])  # free again after the first one committed
        b.commit()
        assert b.passage_count() == 2


def test_texts_survive_a_torn_tail_of_the_passage_log(open_backend, cfg):
    load(open_backend).close()
    log = cfg.index_path / "passages.bin"
    with log.open("ab") as f:
        f.write(b"\x07\x00\x00half a record a crash left")  # appended but never committed
    with opened(open_backend) as r:
        r.upsert([document("new", ["새로 이사 온 이웃이 떡을 돌렸다."])])
        r.commit()
        (hit,) = r.search("이웃 떡", k=1)
        assert (hit.id, hit.doc_id, hit.text) == ("new#0", "new", "새로 이사 온 이웃이 떡을 돌렸다.")
        assert [h.text for h in r.search("김장")] == CORPUS["village-kimjang"]


def test_rebuild_drops_the_records_of_replaced_passages(open_backend, cfg):
    load(open_backend).close()
    log = cfg.index_path / "passages.bin"
    with opened(open_backend) as r:
        for _ in range(3):
            r.upsert([document(d, t) for d, t in CORPUS.items()])
            r.commit()
    grown = log.stat().st_size
    with opened(open_backend, rebuild=True) as r:
        r.upsert([document(d, t) for d, t in CORPUS.items()])
        r.commit()
        assert r.passage_count() == 11
    assert log.stat().st_size * 4 == grown
