"""build-index as a user runs it: a corpus directory, incremental re-runs, --rebuild, crashes and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from contract import CORPUS

from ensemble.config import load_project
from ensemble.core.errors import ConfigError, CorpusError, EnsembleError
from ensemble.retrieval import build
from ensemble.retrieval.base import open_retriever
from ensemble.retrieval.build import build_index, search
from ensemble.retrieval.embedded import EmbeddedRetriever, staging_path

MEJU = "마을 사람들이 메주를 쑤었다."
QUERIES = [("김장", None), ("가족", None), ("친구 바다", None), ("가족", "함께"), ("메주", None)]


def write_project(root: Path, corpus: dict[str, list[str]] = CORPUS) -> Path:
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    for doc_id, texts in corpus.items():
        (root / "corpus" / f"{doc_id}.txt").write_text("\n\n".join(texts), encoding="utf-8")
    (root / "ensemble.yaml").write_text("corpus: [corpus/]\n", encoding="utf-8")
    return root / "ensemble.yaml"


def snapshot(cfg):
    """What a user can observe of an index: its documents, passage count, and ranked results."""
    r = open_retriever(cfg)
    try:
        results = {(q, t): [(h.id, round(h.score, 4), h.text) for h in r.search(q, theme=t, k=20)] for q, t in QUERIES}
        return r.passage_count(), r.doc_hashes(), results
    finally:
        r.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, task, total=None):
        self.events.append(("start", task, total))

    def advance(self, task, n=1, info=None):
        self.events.append(("advance", task, n))

    def end(self, task, summary=None):
        self.events.append(("end", task))

    def log(self, message):
        self.events.append(("log", message))


class InterruptAfter(Recorder):
    def __init__(self, docs: int) -> None:
        super().__init__()
        self.left = docs

    def advance(self, task, n=1, info=None):
        self.left -= n
        if self.left <= 0:
            raise KeyboardInterrupt


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path / "proj")


@pytest.fixture
def one_doc_batches(monkeypatch):
    monkeypatch.setattr(build, "BATCH_CHARS", 1)


def test_build_then_search_then_nothing_to_do(project):
    cfg = load_project(project)
    s = build_index(cfg)
    assert (s.documents, s.added, s.updated, s.deleted, s.unchanged) == (10, 10, 0, 0, 0)
    assert s.passages == 10  # each short document is one passage
    hits = search(cfg, "김장")
    assert [h.doc_id for h in hits] == ["village-kimjang"]
    assert hits[0].id == "village-kimjang#0" and "김장" in hits[0].text
    again = build_index(cfg)
    assert (again.added, again.updated, again.deleted, again.unchanged, again.passages) == (0, 0, 0, 10, 10)


def test_only_changed_documents_are_reindexed(project, monkeypatch):
    cfg = load_project(project)
    build_index(cfg)
    corpus = project.parent / "corpus"
    (corpus / "village-kimjang.txt").write_text("마을 사람들이 함께 모여 메주를 쑤었다.", encoding="utf-8")
    (corpus / "family-photo.txt").unlink()
    (corpus / "new-doc.txt").write_text("새로 온 이웃과 함께 메주를 말렸다.", encoding="utf-8")
    upserted: list[str] = []
    real = EmbeddedRetriever.upsert

    def spy(self, docs, **kw):
        upserted.extend(d.id for d, _ in docs)
        return real(self, docs, **kw)

    monkeypatch.setattr(EmbeddedRetriever, "upsert", spy)
    s = build_index(cfg)
    assert (s.documents, s.added, s.updated, s.deleted, s.unchanged) == (10, 1, 1, 1, 8)
    assert sorted(upserted) == ["new-doc", "village-kimjang"]  # the other eight were not touched
    assert search(cfg, "김장") == []
    assert search(cfg, "사진") == []
    assert {h.doc_id for h in search(cfg, "메주")} == {"village-kimjang", "new-doc"}
    # Same index as building the new corpus from scratch.
    fresh = write_project(project.parent / "fresh", {})
    for f in corpus.iterdir():
        (fresh.parent / "corpus" / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    build_index(load_project(fresh))
    count, hashes, results = snapshot(cfg)
    f_count, f_hashes, f_results = snapshot(load_project(fresh))
    assert (count, hashes) == (f_count, f_hashes)
    assert {k: [(i, t) for i, _, t in v] for k, v in results.items()} == {
        k: [(i, t) for i, _, t in v] for k, v in f_results.items()
    }


def test_rebuild_indexes_everything_into_a_fresh_index(project):
    cfg = load_project(project)
    build_index(cfg)
    before = snapshot(cfg)
    s = build_index(cfg, rebuild=True)
    assert (s.added, s.unchanged, s.passages) == (10, 0, 10)
    assert snapshot(cfg) == before
    assert not staging_path(cfg.index_path).exists()


def test_interrupted_build_resumes_where_it_stopped(project, tmp_path, one_doc_batches):
    cfg = load_project(project)
    with pytest.raises(KeyboardInterrupt):
        build_index(cfg, progress=InterruptAfter(4), checkpoint_passages=1)
    # Three documents were checkpointed before the interrupt; the fourth was written but not committed.
    with open_retriever(cfg) as r:
        assert len(r.doc_hashes()) == 3
    s = build_index(cfg)
    assert (s.added, s.unchanged, s.passages) == (7, 3, 10)
    clean = load_project(write_project(tmp_path / "clean"))
    build_index(clean)
    assert snapshot(cfg) == snapshot(clean)


KILL_SCRIPT = """
import os, sys
from ensemble.config import load_project
from ensemble.retrieval import build

class KillAfter:
    def __init__(self, n): self.n = n
    def start(self, task, total=None): pass
    def end(self, task, summary=None): pass
    def log(self, message): pass
    def advance(self, task, n=1, info=None):
        self.n -= n
        if self.n <= 0:
            os._exit(9)  # no cleanup at all, like kill -9

build.BATCH_CHARS = 1
build.build_index(load_project(sys.argv[1]), rebuild=True, progress=KillAfter(4), checkpoint_passages=1)
"""


def test_killed_rebuild_leaves_the_old_index_and_resumes(project, tmp_path):
    cfg = load_project(project)
    build_index(cfg)
    old = snapshot(cfg)
    (project.parent / "corpus" / "village-kimjang.txt").write_text(MEJU, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 9, proc.stderr
    assert snapshot(cfg) == old  # searches still get the previous index
    assert staging_path(cfg.index_path).is_dir()
    assert (cfg.work_path / "build-index.lock").exists()  # left behind by the dead process; taken over below
    s = build_index(cfg, rebuild=True)
    assert (s.added, s.unchanged) == (7, 3)  # resumed the staged rebuild
    clean = load_project(write_project(tmp_path / "clean"))
    (tmp_path / "clean" / "corpus" / "village-kimjang.txt").write_text(MEJU, encoding="utf-8")
    build_index(clean)
    assert snapshot(cfg) == snapshot(clean)
    assert not staging_path(cfg.index_path).exists()


def test_worker_processes_build_the_same_index(project, tmp_path, one_doc_batches):
    cfg = load_project(project)
    build_index(cfg, workers=2)
    single = load_project(write_project(tmp_path / "single"))
    build_index(single, workers=1)
    assert snapshot(cfg) == snapshot(single)


def test_progress_advances_once_per_document(project):
    cfg = load_project(project)
    rec = Recorder()
    build_index(cfg, progress=rec)
    assert rec.events[0] == ("start", "indexing", 10)
    assert sum(e[2] for e in rec.events if e[0] == "advance") == 10
    assert rec.events[-1] == ("end", "indexing")
    rec = Recorder()
    build_index(cfg, progress=rec)  # nothing to do: still a complete bar
    assert sum(e[2] for e in rec.events if e[0] == "advance") == 10


def test_bad_files_stop_the_build_unless_skipped(project):
    cfg = load_project(project)
    (project.parent / "corpus" / "broken.txt").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(CorpusError, match="broken.txt"):
        build_index(cfg)
    rec = Recorder()
    s = build_index(cfg, skip_bad=True, progress=rec)
    assert s.documents == 10
    assert any(e[0] == "log" and "broken.txt" in e[1] for e in rec.events)


def test_a_live_build_lock_is_respected(project):
    cfg = load_project(project)
    lock = cfg.work_path / "build-index.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(EnsembleError, match="another ensemble run"):
        build_index(cfg)


def test_search_checks_k_before_anything_else(project):
    with pytest.raises(ConfigError, match="positive"):
        search(load_project(project), "가족", k=0)


def test_build_index_says_when_the_korean_analyzer_runs_on_its_slow_path(project, monkeypatch):
    quick = Recorder()
    build_index(load_project(project), progress=quick)
    assert not [e for e in quick.events if e[0] == "log"]  # the compiled lattice is built here

    from ensemble.text import analyzers
    from ensemble.text.nori import NoriAnalyzer

    monkeypatch.setattr(analyzers, "_build", lambda name: NoriAnalyzer(compiled=False))
    slow = Recorder()
    build_index(load_project(project), progress=slow, rebuild=True)
    notes = [e[1] for e in slow.events if e[0] == "log"]
    assert len(notes) == 1 and "pip install -e ." in notes[0] and "nori" in notes[0]


# -- the settings that shape the index -------------------------------------------------------------------------

LONG_DOC = " ".join(f"이웃들이 {i}번째 날에도 함께 모여 메주를 쑤고 김장을 담갔다." for i in range(12))


def set_yaml(project: Path, extra: str) -> None:
    project.write_text(f"corpus: [corpus/]\n{extra}", encoding="utf-8")


def longest_passage(cfg) -> int:
    r = open_retriever(cfg)
    try:
        return max(len(h.text) for h in r.search("메주", k=100))
    finally:
        r.close()


def test_changed_passage_settings_reindex_every_document_and_say_why(project):
    (project.parent / "corpus" / "long.txt").write_text(LONG_DOC, encoding="utf-8")
    set_yaml(project, "passages: {max_chars: 500}\n")
    build_index(load_project(project))
    assert longest_passage(load_project(project)) > 120
    set_yaml(project, "passages: {max_chars: 120}\n")
    cfg = load_project(project)
    rec = Recorder()
    s = build_index(cfg, progress=rec)
    assert longest_passage(cfg) <= 120
    assert (s.updated, s.unchanged) == (11, 0)
    logs = [e[1] for e in rec.events if e[0] == "log"]
    assert logs == ["index settings changed (passages.max_chars 500 → 120): re-indexing every document"]
    again = Recorder()
    assert build_index(cfg, progress=again).unchanged == 11  # recorded: nothing more to do, nothing said
    assert [e for e in again.events if e[0] == "log"] == []


def test_changed_cleaning_reindexes_the_documents_it_changes(project):
    (project.parent / "corpus" / "link.txt").write_text(
        "메주 만드는 법은 https://example.com 에 있다.", encoding="utf-8"
    )
    build_index(load_project(project))
    set_yaml(project, "clean: {urls: false}\n")
    rec = Recorder()
    s = build_index(load_project(project), progress=rec)
    assert (s.updated, s.unchanged) == (1, 10)
    assert [e[1] for e in rec.events if e[0] == "log"] == [
        "index settings changed (clean.urls True → False): re-indexing the documents whose cleaned text changed"
    ]
    assert "example.com" in search(load_project(project), "메주", k=20)[0].text


def test_changed_analyzer_rebuilds_instead_of_failing(project):
    build_index(load_project(project))
    set_yaml(project, "index: {analyzer: standard}\n")
    cfg = load_project(project)
    rec = Recorder()
    s = build_index(cfg, progress=rec)
    assert (s.added, s.passages) == (10, 10)
    assert [e[1] for e in rec.events if e[0] == "log"] == [
        "index settings changed (analyzer 'nori' → 'standard'): rebuilding the index, as --rebuild does"
    ]
    assert [h.doc_id for h in search(cfg, "김장을")] == ["village-kimjang"]
    assert not staging_path(cfg.index_path).exists()


def test_an_index_without_recorded_settings_is_reindexed_once(project):
    cfg = load_project(project)
    build_index(cfg)
    meta_path = cfg.index_path / "ensemble-index.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["settings"]  # as an index built before settings were recorded
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    rec = Recorder()
    assert build_index(cfg, progress=rec).updated == 10
    (line,) = [e[1] for e in rec.events if e[0] == "log"]
    assert "passages.max_chars unrecorded → 500" in line and line.endswith("re-indexing every document")
    assert build_index(cfg).unchanged == 10
