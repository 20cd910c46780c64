"""The index templates in index/ and docker-compose.es.yml: they parse, and they say what the code says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ensemble.config.project import ElasticsearchConfig
from ensemble.retrieval import elastic_template as tpl
from ensemble.retrieval.elastic import physical_name, physical_pattern

REPO = Path(__file__).resolve().parents[2]
INDEX_DIR = REPO / "index"
COMPOSE = REPO / "docker-compose.es.yml"

# mecab-ko-dic's particle (J*) and ending (E*) tags, which Lucene 10 Nori names one by one.
DETAILED_E = {"EP", "EF", "EC", "ETN", "ETM"}
DETAILED_J = {"JKS", "JKC", "JKG", "JKO", "JKB", "JKV", "JKQ", "JX", "JC"}


def _load(name: str) -> dict:
    return json.loads((INDEX_DIR / name).read_text(encoding="utf-8"))


def test_index_files_are_the_generated_templates():
    """One source of truth: every file in index/ is exactly what the code sends (regenerate with
    `python -m ensemble.retrieval.elastic_template index/`)."""
    expected = tpl.default_files()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in INDEX_DIR.glob("*.json")}
    assert on_disk == expected
    assert set(expected) == {f"passages-{a}.json" for a in ("nori", "standard", "english", "russian")}


@pytest.mark.parametrize("analyzer", ["nori", "standard", "english", "russian"])
def test_template_mappings_fields_and_bm25(analyzer):
    body = _load(tpl.template_file_name(analyzer))
    assert body["index_patterns"] == [f"{ElasticsearchConfig().index}-*"]
    settings = body["template"]["settings"]["index"]
    assert settings["similarity"]["ensemble_bm25"] == {"type": "BM25", "k1": 1.2, "b": 0.75}
    props = body["template"]["mappings"]["properties"]
    assert props["doc_id"] == {"type": "keyword"}
    assert props["content_hash"] == {"type": "keyword"}
    text = props["text"]
    assert text["type"] == "text" and text["similarity"] == "ensemble_bm25"
    assert text["fields"]["adv"]["similarity"] == "ensemble_bm25"
    main, adv = text["analyzer"], text["fields"]["adv"]["analyzer"]
    if analyzer == "nori":
        assert (main, adv) == ("ensemble_nori", "ensemble_nori_adv")
    else:  # Elasticsearch's built-in analyzers of the same name: no plugin, no settings needed
        assert (main, adv) == (analyzer, analyzer)
        assert "analysis" not in settings
    assert body["template"]["mappings"]["dynamic"] == "strict"


def test_nori_template_uses_lucene10_detailed_stop_tags():
    analysis = _load("passages-nori.json")["template"]["settings"]["index"]["analysis"]
    tok = analysis["tokenizer"]["ensemble_nori_tokenizer"]
    assert tok == {"type": "nori_tokenizer", "decompound_mode": "discard", "discard_punctuation": True}
    stop = analysis["filter"]["ensemble_nori_pos"]["stoptags"]
    stop_adv = analysis["filter"]["ensemble_nori_pos_adv"]["stoptags"]
    # Elasticsearch 9 rejects the coarse families; every detailed tag must be listed instead.
    assert "E" not in stop and "J" not in stop
    assert DETAILED_E | DETAILED_J <= set(stop)
    assert set(stop) - set(stop_adv) == {"MAG", "MAJ"}
    assert set(stop_adv) <= set(stop)
    assert len(stop) == len(set(stop))
    for name, pos in (("ensemble_nori", "ensemble_nori_pos"), ("ensemble_nori_adv", "ensemble_nori_pos_adv")):
        a = analysis["analyzer"][name]
        assert a["tokenizer"] == "ensemble_nori_tokenizer"
        assert a["filter"] == [pos, "nori_readingform", "lowercase"]


def test_stop_tags_agree_with_the_embedded_analyzer():
    """The embedded nori analyzer stops the Lucene 8/9 families E and J; folding the template's detailed tags
    into families must give exactly its stop set (and the adverb-keeping variant its own)."""
    nori = pytest.importorskip("ensemble.text.nori")
    assert {nori.pos_family(t) for t in tpl.NORI_STOP_TAGS} == set(nori.DEFAULT_STOP_TAGS)
    assert {nori.pos_family(t) for t in tpl.NORI_ADV_STOP_TAGS} == set(nori.DEFAULT_STOP_TAGS - nori.ADVERB_TAGS)
    assert set(tpl.ADVERB_TAGS) == set(nori.ADVERB_TAGS)


def test_inline_analyze_definitions_match_the_template():
    analysis = tpl.analysis_settings("nori")
    for name, pos in (("nori", "ensemble_nori_pos"), ("nori_adv", "ensemble_nori_pos_adv")):
        spec = tpl.inline_analyzer(name)
        assert spec["tokenizer"] == analysis["tokenizer"]["ensemble_nori_tokenizer"]
        assert spec["filter"] == [analysis["filter"][pos], "nori_readingform", "lowercase"]
    assert tpl.inline_analyzer("english") == {"analyzer": "english"}
    with pytest.raises(ValueError):
        tpl.inline_analyzer("klingon")


def test_template_follows_project_bm25_and_index_name():
    body = tpl.index_template("my-corpus", "english", k1=0.9, b=0.4, shards=3, replicas=1)
    settings = body["template"]["settings"]["index"]
    assert settings["similarity"]["ensemble_bm25"] == {"type": "BM25", "k1": 0.9, "b": 0.4}
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == (3, 1)
    assert body["index_patterns"] == ["my-corpus-*"]
    name = physical_name("my-corpus")
    assert physical_pattern("my-corpus").fullmatch(name)
    assert re.fullmatch(body["index_patterns"][0].replace("*", ".*"), name)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, comments and blank lines left out."""
    lines = (INDEX_DIR / "Dockerfile").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_bakes_nori_into_a_pinned_9x_release():
    instructions = _dockerfile()
    m = re.fullmatch(r"FROM docker\.elastic\.co/elasticsearch/elasticsearch:(\d+)\.(\d+)\.(\d+)", instructions[0])
    assert m, "pin an exact x.y.z release"
    assert int(m.group(1)) == tpl.SERVER_MAJOR
    assert "RUN bin/elasticsearch-plugin install --batch analysis-nori" in instructions


def test_compose_builds_the_image_and_installs_nothing_at_start():
    svc = _compose()["services"]["elasticsearch"]
    assert svc["build"] == {"context": "index", "dockerfile": "Dockerfile"}
    assert (REPO / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    assert svc["pull_policy"] == "build"
    assert "command" not in svc and "entrypoint" not in svc  # the image's own start, no plugin install
    assert "plugin install" not in COMPOSE.read_text(encoding="utf-8")
    assert "up -d --build" in COMPOSE.read_text(encoding="utf-8")
    base_version = _dockerfile()[0].rsplit(":", 1)[1]
    assert svc["image"] == f"ensemble-elasticsearch-nori:{base_version}"  # the tag names the release it holds
    env = svc["environment"]
    assert env["discovery.type"] == "single-node"
    assert "-Xms" in env["ES_JAVA_OPTS"] and "-Xmx" in env["ES_JAVA_OPTS"]
    assert env["xpack.security.enabled"] == "false"
    assert "SECURITY IS DISABLED" in COMPOSE.read_text(encoding="utf-8")


def test_compose_publishes_on_loopback_only_with_volume_and_healthcheck():
    doc = _compose()
    svc = doc["services"]["elasticsearch"]
    assert svc["ports"] == ["127.0.0.1:9200:9200"]
    volume, target = svc["volumes"][0].split(":", 1)
    assert target == "/usr/share/elasticsearch/data" and volume in doc["volumes"]
    test = " ".join(svc["healthcheck"]["test"])
    assert "_cluster/health" in test and "analysis-nori" in test


def test_compose_server_major_matches_the_client_extra():
    """The 9.x client refuses 8.x servers: the es extra, the compose pin and the template must agree."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    spec = " ".join(extra["es"])
    assert f">={tpl.SERVER_MAJOR}" in spec and f"<{tpl.SERVER_MAJOR + 1}" in spec
    image_version = _dockerfile()[0].rsplit(":", 1)[1]
    readme = (INDEX_DIR / "README.md").read_text(encoding="utf-8")
    assert image_version in readme
