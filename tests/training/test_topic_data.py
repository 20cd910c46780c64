"""Each topic's dataset is the topic's: the data report (hits per query, passages, overlap), its warnings, and
`--strict`. Retrieval runs on a real embedded index where the query semantics matter, else on the stand-in."""

import json

import pytest
from test_training_cli import invoke, one_error_line
from training_support import topic

from ensemble.config.project import IndexConfig, ProjectConfig
from ensemble.core.artifacts import sha256_text
from ensemble.core.errors import ConfigError
from ensemble.corpus.types import Document, Passage
from ensemble.retrieval.base import open_retriever
from ensemble.training.config import TopicsFile
from ensemble.training.topic_data import (
    ExpertData,
    data_problems,
    retrieve_topic,
    review_datasets,
    with_overlaps,
)

# Every passage holds the theme 함께; four are about 가족 (family), four about 친구 (friends), one about neither.
TOGETHER = {
    "fam-0": "우리 가족은 매일 저녁 함께 밥을 먹는다.",
    "fam-1": "주말에는 가족과 함께 공원을 걸었다.",
    "fam-2": "명절이면 온 가족이 함께 모여 저녁을 먹는다.",
    "fam-3": "가족 사진을 함께 정리하며 웃었다.",
    "fr-0": "친구들과 함께 바다로 여행을 떠났다.",
    "fr-1": "오랜 친구와 함께 편지를 읽었다.",
    "fr-2": "친구들과 함께 바다에서 노래를 불렀다.",
    "fr-3": "학교 친구와 함께 편지를 썼다.",
    "work-0": "동료들과 함께 일하면 힘든 일도 금방 끝난다.",
}


def _topics(*topics: dict, theme: str = "함께", **defaults) -> TopicsFile:
    doc = {"min_val_passages": 1, "val_fraction": 0.25, **defaults}
    return TopicsFile.model_validate({"theme": theme, "defaults": doc, "topics": list(topics)})


@pytest.fixture
def retriever(tmp_path):
    cfg = ProjectConfig(index=IndexConfig()).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")
    r = open_retriever(cfg, create=True)
    docs = []
    for doc_id, text in TOGETHER.items():
        doc = Document(id=doc_id, text=text, title=None, source=f"{doc_id}.txt", content_hash=sha256_text(text))
        docs.append((doc, [Passage(id=f"{doc_id}#0", doc_id=doc_id, n=0, text=text)]))
    r.upsert(docs)
    r.commit()
    yield r
    r.close()


def _retrieve(retriever, topics: TopicsFile) -> dict[str, ExpertData]:
    return with_overlaps({t.name: retrieve_topic(retriever, topics, t, topics.params(t)) for t in topics.topics})


def _ids(d: ExpertData) -> set[str]:
    return {p.id for p in (*d.train, *d.val)}


def test_two_topics_with_disjoint_queries_get_disjoint_datasets(retriever):
    # top_k 10 reaches past the four passages each topic's words find: before hits had to hold a query term,
    # the theme alone filled the rest and both topics got all nine passages.
    topics = _topics(
        {"name": "family", "queries": ["가족 저녁", "가족 공원"]},
        {"name": "friends", "queries": ["친구 바다", "친구 편지"]},
        top_k=10,
    )
    data = _retrieve(retriever, topics)
    assert _ids(data["family"]) == {f"fam-{i}#0" for i in range(4)}
    assert _ids(data["friends"]) == {f"fr-{i}#0" for i in range(4)}
    assert data["family"].report() == {"hits_per_query": [4, 4], "passages": 4, "overlap": {"friends": 0.0}}
    assert data["friends"].overlap == {"family": 0.0}


def test_topics_sharing_passages_are_reported_with_their_jaccard(retriever):
    topics = _topics(
        {"name": "family", "queries": ["가족 저녁"]},
        {"name": "meals", "queries": ["저녁 밥"]},  # fam-0 and fam-2 only: both inside family's four
        top_k=10,
    )
    data = _retrieve(retriever, topics)
    assert data["family"].passages == 4 and data["meals"].passages == 2
    assert data["family"].overlap == {"meals": 0.5} and data["meals"].overlap == {"family": 0.5}
    logged: list[str] = []
    warned: list[str] = []
    params = {t.name: topics.params(t).model_copy(update={"min_passages": 1}) for t in topics.topics}
    review_datasets(topics, data, params, strict=False, log=logged.append, warn=warned.append)
    assert logged == [
        "family: 4 hits (4 per query), 4 passages after de-duplication; overlap (Jaccard) meals 0.50",
        "meals: 2 hits (2 per query), 2 passages after de-duplication; overlap (Jaccard) family 0.50",
    ]
    assert warned == []  # a Jaccard of 0.5 is not above it


def test_too_few_passages_and_shared_passages_are_warned_about_in_one_line_each(retriever):
    topics = _topics(
        {"name": "family", "queries": ["가족 저녁", "가족 공원"]},
        {"name": "kin", "queries": ["가족"]},
        {"name": "friends", "queries": ["친구"], "min_passages": 4},
        top_k=10,
    )
    data = _retrieve(retriever, topics)
    params = {t.name: topics.params(t) for t in topics.topics}
    assert params["family"].min_passages == 50  # the default
    warned: list[str] = []
    review_datasets(topics, data, params, strict=False, log=lambda _: None, warn=warned.append)
    assert warned == [
        "warning: topic 'family' has only 4 passages (min_passages: 50); index more corpus on the topic, add or "
        "broaden its queries, or raise top_k",
        "warning: topics 'family' and 'kin' share 4 passages (Jaccard 1.00 > 0.5; 4/4 of 'family', 4/4 of 'kin'): "
        "make their queries more distinct, index more corpus, or lower top_k",
        "warning: topic 'kin' has only 4 passages (min_passages: 50); index more corpus on the topic, add or "
        "broaden its queries, or raise top_k",
    ]  # friends has its 4 passages: its own min_passages is 4
    assert [p.topic for p in data_problems(data, params)] == ["family", "family", "kin"]


def test_strict_makes_the_first_problem_an_error_at_the_topics_queries(retriever):
    topics = _topics({"name": "family", "queries": ["가족"]}, {"name": "kin", "queries": ["가족 저녁"]}, top_k=10)
    params = {t.name: topics.params(t).model_copy(update={"min_passages": 1}) for t in topics.topics}
    logged: list[str] = []
    with pytest.raises(ConfigError) as e:
        review_datasets(
            topics, _retrieve(retriever, topics), params, strict=True, log=logged.append, warn=logged.append
        )
    assert e.value.key == "topics[0].queries"
    assert "topics 'family' and 'kin' share 4 passages" in e.value.message and "(--strict)" in e.value.message
    assert logged == []  # the error is the only line


def test_the_example_project_does_not_warn(tmp_path):
    from ensemble.config import load_project
    from ensemble.examples import init_project
    from ensemble.retrieval.build import build_index
    from ensemble.training.config import load_topics

    project = init_project(tmp_path / "ex")
    cfg = load_project(project / "ensemble.yaml")
    build_index(cfg)
    topics = load_topics(project / "topics.yaml")
    r = open_retriever(cfg)
    try:
        data = {t.name: retrieve_topic(r, topics, t, topics.params(t)) for t in topics.topics}
    finally:
        r.close()
    warned: list[str] = []
    params = {t.name: topics.params(t) for t in topics.topics}
    data = review_datasets(topics, data, params, strict=True, log=lambda _: None, warn=warned.append)
    assert warned == []
    assert all(0 < j <= 0.5 for d in data.values() for j in d.overlap.values())


# -- train-experts, as a user runs it (on the stand-in retriever) -----------------------------------------


def _tree(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_strict_exits_2_with_one_line_and_writes_nothing(project, fake_retriever, capsys):
    # Same queries: the same passages, so the two datasets are one.
    path = project.topics([topic("family"), {**topic("family"), "name": "kin"}], defaults={"min_passages": 1})
    before = _tree(project.root)
    code, out, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path), "--strict")
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert "topics.yaml:" in line and "topics[0].queries:" in line
    assert "topics 'family' and 'kin' share" in line and "(--strict)" in line
    assert _tree(project.root) == before


def test_strict_refuses_a_topic_below_min_passages(project, fake_retriever, capsys):
    path = project.topics([topic("family"), topic("village", min_passages=40)], defaults={"min_passages": 1})
    code, _, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path), "--strict")
    line = one_error_line(err)
    assert code == 2 and "topics[1].queries:" in line and "topic 'village' has only" in line
    assert "(min_passages: 40)" in line
    assert not (project.root / "work" / "experts").exists()


def test_report_is_logged_warned_and_kept_in_the_manifest_and_json(project, fake_retriever, capsys):
    path = project.topics(
        [topic("family"), {**topic("family"), "name": "kin"}], defaults={"max_steps": 1, "min_passages": 1}
    )
    code, out, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path), "--json")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: topics")]
    assert warnings == [next(line for line in err.splitlines() if "'family' and 'kin' share" in line)]
    assert "make their queries more distinct" in warnings[0]
    assert any(line.startswith("family: ") and "overlap (Jaccard) kin 1.00" in line for line in err.splitlines())
    family, kin = json.loads(out)
    assert family["data"]["overlap"] == {"kin": 1.0} and kin["data"]["overlap"] == {"family": 1.0}
    assert family["data"]["hits_per_query"] == [
        len(fake_retriever.search(q, theme="함께", k=10)) for q in topic("family")["queries"]
    ]
    assert family["data"]["passages"] == family["data"]["passages_train"] + family["data"]["passages_val"]
    on_disk = json.loads((project.root / "work" / "experts" / "kin" / "manifest.json").read_text())
    assert on_disk["data"]["overlap"] == {"family": 1.0} and on_disk["data"]["passages"] == kin["data"]["passages"]
