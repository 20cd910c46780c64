"""`ensemble plan` on small built corpora in Korean, English and Russian: three clear groups of content around
one theme word; the planned topics must find the groups again, load as topics.yaml and outline.yaml, and give
train-experts' retrieval what it needs."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ensemble.composition.config import load_outline
from ensemble.config import load_project
from ensemble.core.errors import EnsembleError
from ensemble.planning import plan_topics
from ensemble.planning.plan import DEFAULT_TOP_K, MAX_OVERLAP, Plan, culprit, opening, split_queries
from ensemble.planning.terms import romanize, slug, unique_slugs
from ensemble.retrieval.base import open_retriever
from ensemble.retrieval.build import build_index
from ensemble.training.config import TrainParams, load_topics
from ensemble.training.topic_data import retrieve_topic

TOP_K = 20
PER_GROUP = 14

# Three groups of content words per language; every passage holds the theme word and filler shared by all.
LANGUAGES = {
    "nori": {
        "theme": "함께",
        "groups": {
            "sea": "바다 파도 어부 물고기 모래 갈매기 항구 등대".split(),
            "food": "김치 국수 부엌 요리 반찬 냄비 식탁 양념".split(),
            "school": "학생 교실 시험 공책 칠판 숙제 도서관 연필".split(),
        },
        "filler": "사람 오늘 마음 시간".split(),
        "template": "{0}와 {1}를 {t} 보았다. {2}에서 {3} 이야기를 했다. {f} 그리고 {4}.",
        "off_theme": "{0}와 {1}를 혼자 보았다.",
    },
    "english": {
        "theme": "together",
        "groups": {
            "sea": "ocean waves fisherman harbor seagull lighthouse sand boat".split(),
            "food": "kitchen noodles recipe spices kettle dinner bread soup".split(),
            "school": "students classroom teacher exam notebook homework library pencil".split(),
        },
        "filler": "people today heart time".split(),
        "template": "We saw the {0} and the {1} {t}. The {2} was near the {3}, {f} and {4}.",
        "off_theme": "I saw the {0} and the {1} alone.",
    },
    "russian": {
        "theme": "вместе",
        "groups": {
            "sea": "море волна рыбак гавань чайка маяк песок лодка".split(),
            "food": "кухня лапша рецепт специи чайник ужин хлеб суп".split(),
            "school": "ученик класс учитель экзамен тетрадь урок библиотека карандаш".split(),
        },
        "filler": "люди сегодня сердце время".split(),
        "template": "Мы {t} видели {0} и {1}. {2} был рядом, {3}, {f} и {4}.",
        "off_theme": "Я один видел {0} и {1}.",
    },
}


def corpus_rows(lang: str) -> list[dict[str, str]]:
    """PER_GROUP passages per group with the theme, a few without; one document each (so one passage each)."""
    spec = LANGUAGES[lang]
    rng = random.Random(7)
    rows = []
    for group, words in spec["groups"].items():
        for i in range(PER_GROUP):
            w = rng.sample(words, 5)
            text = spec["template"].format(*w, t=spec["theme"], f=rng.choice(spec["filler"]))
            rows.append({"id": f"{group}-{i}", "title": group, "text": text})
        for i in range(2):
            rows.append({"id": f"{group}-off-{i}", "title": group, "text": spec["off_theme"].format(*words[i : i + 2])})
    return rows


def make_project(root: Path, lang: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in corpus_rows(lang))
    (root / "corpus.jsonl").write_text(lines + "\n", encoding="utf-8")
    (root / "ensemble.yaml").write_text(f"corpus: [corpus.jsonl]\nindex:\n  analyzer: {lang}\n", encoding="utf-8")
    build_index(load_project(root / "ensemble.yaml"), workers=1)
    return root / "ensemble.yaml"


@pytest.fixture(scope="module", params=list(LANGUAGES))
def built(request, tmp_path_factory):
    lang = request.param
    path = make_project(tmp_path_factory.mktemp(f"plan-{lang}"), lang)
    cfg = load_project(path)
    return lang, cfg, plan_topics(cfg, LANGUAGES[lang]["theme"], 3, top_k=TOP_K, seed=0)


def group_of(pid: str) -> str:
    return pid.split("-")[0]


def test_topics_find_the_built_groups(built, tmp_path):
    lang, cfg, plan = built
    path = tmp_path / "topics.yaml"
    path.write_text(plan.topics_yaml(), encoding="utf-8")
    topics = load_topics(path)
    assert topics.theme == LANGUAGES[lang]["theme"] and [t.name for t in topics.topics] == [t.name for t in plan.topics]
    majority = []
    with open_retriever(cfg) as r:
        for t in topics.topics:
            data = retrieve_topic(r, topics, t, topics.params(t))  # what train-experts runs first
            ids = [p.id for p in (*data.train, *data.val)]
            assert all("-off-" not in i for i in ids)  # the theme is required
            group, n = Counter(group_of(i) for i in ids).most_common(1)[0]
            assert n / len(ids) >= 0.8, (lang, t.name, t.queries, Counter(group_of(i) for i in ids))
            majority.append(group)
    assert sorted(majority) == sorted(LANGUAGES[lang]["groups"])
    assert plan.max_overlap <= 0.2
    assert all(1 <= len(q.split()) <= 3 for t in plan.topics for q in t.queries)


def test_outline_skeleton_loads(built, tmp_path):
    lang, _, plan = built
    path = tmp_path / "outline.yaml"
    path.write_text(plan.outline_yaml(), encoding="utf-8")
    outline = load_outline(path)
    assert [s.expert for s in outline.sections] == [t.name for t in plan.topics]
    assert all(s.prompt and s.heading for s in outline.sections)


def test_same_seed_same_plan(built):
    lang, cfg, plan = built
    again = plan_topics(cfg, LANGUAGES[lang]["theme"], 3, top_k=TOP_K, seed=0)
    assert again.topics_yaml() == plan.topics_yaml() and again.outline_yaml() == plan.outline_yaml()


def test_overlap_repair_keeps_a_loadable_plan(built, tmp_path):
    """With no overlap allowed every shared term is replaced while others remain; the result still loads."""
    lang, cfg, _ = built
    plan = plan_topics(cfg, LANGUAGES[lang]["theme"], 3, top_k=TOP_K, seed=1, max_overlap=0.0)
    path = tmp_path / "topics.yaml"
    path.write_text(plan.topics_yaml(), encoding="utf-8")
    assert len(load_topics(path).topics) == 3


def test_bad_input_is_one_clear_error(built):
    lang, cfg, _ = built
    with pytest.raises(EnsembleError, match="no passage matches the theme"):
        plan_topics(cfg, "zzzqx", 3, top_k=TOP_K)
    with pytest.raises(EnsembleError, match="fewer than the 100 topics"):
        plan_topics(cfg, LANGUAGES[lang]["theme"], 100, top_k=TOP_K)
    for key, kwargs in (("topics", {"topics": 0}), ("queries", {"topics": 3, "queries": 0})):
        with pytest.raises(EnsembleError, match="must be a positive number") as e:
            plan_topics(cfg, LANGUAGES[lang]["theme"], **kwargs)
        assert e.value.key == key
    with pytest.raises(EnsembleError, match="must not be blank"):
        plan_topics(cfg, "  ", 3)


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("plan-cli"), "english")


def test_cli_stdout_and_files(cli, english, tmp_path):
    root = english.parent
    r = cli("plan", "--theme", "together", "--topics", "3", "--top-k", str(TOP_K), cwd=root)
    assert r.code == 0, r.stderr
    assert yaml.safe_load(r.stdout)["defaults"] == {"top_k": TOP_K}
    assert "3 topics from" in r.stderr
    out, outline = tmp_path / "t.yaml", tmp_path / "o.yaml"
    r = cli("plan", "--theme", "together", "--topics", "3", "-o", str(out), "--outline", str(outline), cwd=root)
    assert r.code == 0 and r.stdout == ""
    assert load_topics(out).defaults.top_k == DEFAULT_TOP_K
    assert len(load_outline(outline).sections) == 3


def test_cli_bad_input_exit_2(cli, english, tmp_path):
    root = english.parent
    r = cli("plan", "--theme", "zzzqx", "--topics", "3", cwd=root)
    assert r.code == 2 and len(r.err_lines) == 1 and "no passage matches the theme" in r.stderr and r.stdout == ""
    r = cli("plan", "--theme", "together", "--topics", "99", cwd=root)
    assert r.code == 2 and len(r.err_lines) == 1 and "fewer than the 99 topics" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: [x]\nindex:\n  analyzer: klingon\n", encoding="utf-8")
    r = cli("-c", str(bad), "plan", "--theme", "together", "--topics", "3", cwd=root)
    assert r.code == 2 and len(r.err_lines) == 1 and "analyzer" in r.stderr


def test_defaults_agree_with_training():
    from ensemble.training.topic_data import MAX_OVERLAP as TRAINING_MAX_OVERLAP

    assert DEFAULT_TOP_K == TrainParams().top_k
    assert MAX_OVERLAP == TRAINING_MAX_OVERLAP


def test_slugs_and_romanization():
    assert romanize("사랑") == "sarang" and romanize("편지") == "pyeonji"
    assert slug(["любовь", "письмо"]) == "lyubov-pismo"
    assert slug(["Love", "letters!"]) == "love-letters"
    assert slug(["…"]) == ""
    assert unique_slugs(["", "sea", "sea"]) == ["topic-1", "sea", "sea-3"]


def test_pure_helpers():
    assert split_queries(["a", "b", "c", "d", "e"], 3) == [["a", "d"], ["b", "e"], ["c"]]
    assert split_queries(["a"], 3) == [["a"]]
    held = {"p1": frozenset({"x", "y"}), "p2": frozenset({"x"}), "p3": frozenset({"z"})}
    assert culprit({"p1", "p2"}, {0: ["y", "z"], 1: ["x"]}, held) == (1, "x")
    assert culprit({"p3"}, {0: ["a"], 1: ["b"]}, held) is None
    assert opening('"어서 와." 그가 말했다. 날이 맑았다. 바람이 불었다.').startswith("그가 말했다. 날이 맑았다.")
    assert isinstance(Plan("t", 1, 0, 0, ()).mean_overlap, float)
