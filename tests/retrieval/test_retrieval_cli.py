"""`ensemble build-index`, `search` and `analyze` run as a user runs them (a subprocess each)."""

from __future__ import annotations

import json
import re

import pytest
from test_build import write_project

from ensemble.config import load_project
from ensemble.retrieval.build import build_index


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A project indexed once for the read-only commands (in-process: the subprocess tests stay fast)."""
    project = write_project(tmp_path_factory.mktemp("built"))
    build_index(load_project(project))
    return project


def one_error_line(r, *needles: str) -> None:
    assert r.code == 2, (r.stdout, r.stderr)
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in r.stderr


def test_build_index_reports_on_stderr_only(tmp_path, cli):
    project = write_project(tmp_path)
    r = cli("-c", str(project), "build-index", "--rebuild")  # --rebuild works on a first build too
    assert r.code == 0, r.stderr
    assert r.stdout == ""
    assert re.search(r"indexed 10 documents, 10 passages in [0-9.]+ s \(10 added", r.err_lines[-1]), r.stderr
    quiet = cli("-c", str(project), "-q", "build-index")
    assert quiet.code == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert cli("-c", str(project), "build-index").err_lines[-1].endswith("10 unchanged)")


def test_changed_passage_settings_are_said_in_one_stderr_line(tmp_path, cli):
    project = write_project(tmp_path)
    long_doc = " ".join(f"이웃들이 {i}번째 날에도 함께 모여 메주를 쑤고 김장을 담갔다." for i in range(12))
    (tmp_path / "corpus" / "long.txt").write_text(long_doc, encoding="utf-8")
    assert cli("-c", str(project), "build-index").code == 0
    project.write_text("corpus: [corpus/]\npassages: {max_chars: 120}\n", encoding="utf-8")
    r = cli("-c", str(project), "build-index")
    assert r.code == 0 and r.stdout == "", r.stderr
    assert r.err_lines[0] == "index settings changed (passages.max_chars 500 → 120): re-indexing every document"
    assert r.err_lines[-1].endswith("(0 added, 11 updated, 0 deleted, 0 unchanged)"), r.stderr
    hits = cli("-c", str(project), "search", "메주", "-k", "50", "--json").stdout.splitlines()
    assert len(hits) > 2 and max(len(json.loads(h)["text"]) for h in hits) <= 120


def test_search_prints_a_table_and_json_lines(built, cli):
    r = cli("-c", str(built), "search", "가족", "-k", "2")
    assert r.code == 0, r.stderr
    assert "family-photo#0" in r.stdout and "family-dinner#0" in r.stdout and "table-seollal" not in r.stdout
    assert r.stdout.index("family-photo#0") < r.stdout.index("family-dinner#0")
    r = cli("-c", str(built), "search", "가족", "--theme", "함께", "--json")
    assert r.code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["id"] for row in rows][0] == "family-dinner#0"
    assert all(set(row) == {"id", "doc_id", "score", "text"} for row in rows)
    assert all(isinstance(row["score"], float) for row in rows)
    assert [row["doc_id"] for row in rows] == ["family-dinner", "table-seollal"]  # 함께 and 가족 both
    assert cli("-c", str(built), "search", "함께", "--json").stdout == ""  # an adverb alone finds nothing
    r = cli("-c", str(built), "search", "", "--theme", "함께", "--json")  # the theme alone
    assert {json.loads(line)["doc_id"] for line in r.stdout.splitlines()} == {
        "family-dinner", "friends-trip", "village-kimjang", "work-team", "table-seollal",
    }  # fmt: skip


def test_search_explain_shows_the_matched_clauses(built, cli):
    r = cli("-c", str(built), "search", "가족 저녁 바다", "--theme", "함께", "--json", "--explain")
    assert r.code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    matched = {row["id"]: row["matched"] for row in rows}
    assert set(matched) == {"family-dinner#0", "friends-trip#0", "table-seollal#0"}
    dinner = matched["family-dinner#0"]
    assert dinner["theme"] == {"field": "text.adv", "terms": ["함께"], "score": dinner["theme"]["score"]}
    assert dinner["query"]["terms"] == ["가족", "저녁"] and dinner["query"]["field"] == "text"
    assert matched["friends-trip#0"]["query"]["terms"] == ["바다"]
    for row in rows:
        parts = row["matched"]["theme"]["score"] + row["matched"]["query"]["score"]
        assert parts == pytest.approx(row["score"], rel=1e-5)
    table = cli("-c", str(built), "search", "가족 저녁 바다", "--theme", "함께", "--explain", env={"COLUMNS": "200"})
    assert table.code == 0 and table.stderr == ""
    assert "theme 함께" in table.stdout and "query 가족 저녁" in table.stdout
    r = cli("-c", str(built), "search", "", "--theme", "함께", "--json", "--explain", "-k", "1")
    assert set(json.loads(r.stdout)["matched"]) == {"theme"}  # a theme-only search has no query clause


def test_search_before_build_index_says_what_to_do(tmp_path, cli):
    project = write_project(tmp_path)
    one_error_line(cli("-c", str(project), "search", "가족"), "ensemble build-index")


@pytest.mark.parametrize("k", ["0", "-3"])
def test_search_needs_a_positive_k(built, cli, k):
    one_error_line(cli("-c", str(built), "search", "가족", "-k", k), "k")


def test_analyze_needs_no_project(tmp_path, cli):
    r = cli("analyze", "가족과 함께 저녁을 먹었다", "--json", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout) == ["가족", "저녁", "먹"]
    r = cli("analyze", "가족과 함께 저녁을 먹었다", "--analyzer", "nori_adv", "--json", cwd=tmp_path)
    assert json.loads(r.stdout) == ["가족", "함께", "저녁", "먹"]
    r = cli("analyze", "가족과 함께", cwd=tmp_path)
    assert r.code == 0 and "가족" in r.stdout and "NNG" in r.stdout  # the _analyze-like table


def test_analyze_reads_lines_from_stdin(tmp_path, cli):
    r = cli("analyze", "-", "--json", input="가족과 함께\n\n친구들과 바다에\n", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()] == [["가족"], [], ["친구", "바다"]]
    r = cli("analyze", "-", input="가족과 함께\n친구들과 바다에\n", cwd=tmp_path)
    assert r.stdout.splitlines() == ["가족", "친구 바다"]


def test_analyze_defaults_to_the_projects_analyzer(tmp_path, cli):
    (tmp_path / "ensemble.yaml").write_text("index:\n  analyzer: english\n", encoding="utf-8")
    r = cli("analyze", "Running dogs", "--json", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout) == ["run", "dog"]


def test_analyze_rejects_an_unknown_analyzer(tmp_path, cli):
    one_error_line(cli("analyze", "x", "--analyzer", "klingon", cwd=tmp_path), "klingon", "nori")
