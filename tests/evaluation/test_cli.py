"""`ensemble evaluate` as a user runs it: the JSON shape, the table, and one-line errors."""

from __future__ import annotations

import json

from eval_kit import ORIGINAL, SOURCE, topical_text

ENV = {"OMP_NUM_THREADS": "1"}
SECTION_KEYS = {"heading", "chars", "distinct_2", "rep_4", "copy_rate", "own_expert_rank", "perplexity"}


def test_json_report_has_the_documented_shape(project, cli):
    sections = [("가족 이야기", "family"), ("베낀 글", "nature")]
    doc = project.document([("가족 이야기", topical_text("family")), ("베낀 글", SOURCE)])
    outline = project.outline(sections)
    r = cli(
        "-c",
        str(project.config_path),
        "evaluate",
        str(doc),
        "--outline",
        str(outline),
        "--json",
        cwd=project.root,
        env=ENV,
    )
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)  # stdout holds the JSON and nothing else
    assert set(data) >= {"overall", "sections", "notes", "settings"}
    assert {"chars", "distinct_2", "rep_4", "copy_rate", "perplexity", "expert_perplexity"} <= set(data["overall"])
    assert len(data["sections"]) == 2
    family, copied = data["sections"]
    assert SECTION_KEYS <= set(family)
    assert family["heading"] == "가족 이야기" and family["expert"] == "family"
    assert family["own_expert_rank"] == 1
    assert family["perplexity"] > 1 and family["expert_perplexity"] > 1
    assert copied["copy_rate"] > 0.9 and copied["longest_copy_text"].startswith("등대지기")
    assert data["notes"] == []


def test_table_by_default_and_notes_for_what_is_not_built(bare, cli):
    doc = bare.document([("새로 쓴 글", ORIGINAL), ("반복", "나는 학교에 갔다. " * 6)])
    r = cli("-c", str(bare.config_path), "evaluate", str(doc), cwd=bare.root, env=ENV)
    assert r.code == 0, r.stderr
    for text in ("새로 쓴 글", "반복", "overall", "rep-4", "copy", "ppl base"):
        assert text in r.stdout
    assert "{" not in r.stdout
    notes = [line for line in r.err_lines if line.startswith("note:")]
    assert any("build-index" in n for n in notes)
    assert any("pretrain-base" in n for n in notes)


def test_missing_file_is_one_line_and_exit_2(project, cli):
    r = cli("-c", str(project.config_path), "evaluate", "missing.md", cwd=project.root, env=ENV)
    assert r.code == 2
    assert r.err_lines == [r.err_lines[0]] and r.err_lines[0].startswith("error: ")
    assert "missing.md" in r.err_lines[0] and "not found" in r.err_lines[0]
    assert r.stdout == ""


def test_markdown_without_sections_is_one_line_and_exit_2(project, cli):
    flat = project.root / "notes.md"
    flat.write_text("# 제목만 있다\n\n섹션이 없는 글.\n", encoding="utf-8")
    r = cli("-c", str(project.config_path), "evaluate", str(flat), cwd=project.root, env=ENV)
    assert r.code == 2
    assert len(r.err_lines) == 1 and "no sections found" in r.err_lines[0]
    bad_outline = cli(
        "-c",
        str(project.config_path),
        "evaluate",
        str(project.document([("a", "b")])),
        "--outline",
        "nope.yaml",
        cwd=project.root,
        env=ENV,
    )
    assert bad_outline.code == 2 and len(bad_outline.err_lines) == 1


def test_a_precision_this_machine_cannot_take_is_one_line_and_exit_2(project, cli):
    doc = project.document([("가족 이야기", topical_text("family"))])
    r = cli("-c", str(project.config_path), "evaluate", str(doc), "--precision", "fp16", cwd=project.root, env=ENV)
    assert r.code == 2 and r.stdout == ""
    assert len(r.err_lines) == 1 and "--precision" in r.err_lines[0] and "needs a CUDA GPU" in r.err_lines[0]
    r = cli("-c", str(project.config_path), "evaluate", str(doc), "--precision", "fp8", cwd=project.root, env=ENV)
    assert r.code == 2 and "unknown precision 'fp8'" in r.err_lines[0]
