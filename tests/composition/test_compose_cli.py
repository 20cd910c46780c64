"""`ensemble compose` as a user runs it: only markdown on stdout, progress on stderr, bad outline: exit 2."""

from __future__ import annotations

import json

import pytest
from compose_kit import SECTIONS

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_stdout_is_only_the_markdown_document(project, cli):
    outline = project.outline()
    r = cli(
        "-c",
        str(project.config_path),
        "compose",
        str(outline),
        "--seed",
        "3",
        cwd=project.root,
        env=ONE_THREAD,
    )
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "# 함께 사는 이야기"
    assert [line for line in lines if line.startswith("#")] == ["# 함께 사는 이야기"] + [
        f"## {s['heading']}" for s in SECTIONS
    ]
    assert "chars" not in r.stdout and "loading" not in r.stdout
    assert "loading the base model" in r.stderr and "sections," in r.stderr

    # Same seed again: every section comes from the cache, same bytes; --output writes the file instead.
    out = project.root / "essay.md"
    again = cli(
        "-c",
        str(project.config_path),
        "compose",
        str(outline),
        "--seed",
        "3",
        "--output",
        str(out),
        cwd=project.root,
        env=ONE_THREAD,
    )
    assert again.code == 0 and again.stdout == "" and out.read_text(encoding="utf-8") == r.stdout

    report = cli(
        "-c",
        str(project.config_path),
        "-q",
        "compose",
        str(outline),
        "--seed",
        "3",
        "--json",
        cwd=project.root,
        env=ONE_THREAD,
    )
    assert report.code == 0 and report.stderr == ""
    data = json.loads(report.stdout)
    assert data["markdown"] == r.stdout and data["seed"] == 3 and data["generated"] == []
    for sec in data["sections"]:
        assert {"chars", "sentences", "rejected", "seconds", "steps"} <= set(sec)


BAD = {
    "unknown expert": (
        {"sections": [{"heading": "마을", "expert": "village", "prompt": "마을에 산다."}]},
        ":6: sections[0].expert: expert 'village' has no trained adapter",
    ),
    "empty sections": ({"sections": []}, ":4: sections: needs at least one section"),
    "negative target": (
        {"sections": [{**SECTIONS[0], "target_chars": -100}]},
        ":8: sections[0].target_chars: Input should be greater than 0",
    ),
    "unknown key": (
        {"sections": [{**SECTIONS[0], "temprature": 0.7}]},
        ":8: sections[0].temprature: unknown key; did you mean 'temperature'?",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_outline_exits_2_with_one_line(project, cli, case):
    import yaml

    change, expected = BAD[case]
    doc = {"title": "함께", "defaults": {"target_chars": 100}, **change}
    path = project.root / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    r = cli("-c", str(project.config_path), "compose", str(path), cwd=project.root, env=ONE_THREAD)
    assert r.code == 2 and r.stdout == ""
    assert len(r.err_lines) == 1, r.stderr
    assert r.err_lines[0].startswith(f"error: {path}:") and expected in r.err_lines[0]


def test_an_expert_that_did_not_improve_is_named_in_a_warning(project, cli):
    manifest = project.work / "experts" / "friends" / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({**data, "improved": False}), encoding="utf-8")
    outline = project.outline(SECTIONS[:2])
    r = cli("-c", str(project.config_path), "compose", str(outline), cwd=project.root, env=ONE_THREAD)
    assert r.code == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: expert")]
    assert len(warnings) == 1 and "'friends' did not improve" in warnings[0] and "--only friends" in warnings[0]


def test_a_precision_this_machine_cannot_take_is_one_line_naming_the_outline(project, cli):
    outline = project.outline(SECTIONS[:1])
    text = outline.read_text(encoding="utf-8")
    outline.write_text("precision: fp16\n" + text, encoding="utf-8")
    r = cli("-c", str(project.config_path), "compose", str(outline), cwd=project.root, env=ONE_THREAD)
    assert r.code == 2 and r.stdout == ""
    assert len(r.err_lines) == 1 and "outline.yaml:1: precision: fp16 needs a CUDA GPU" in r.stderr, r.stderr
    assert not (project.work / "compose").exists()  # refused before anything was written


def test_precision_is_part_of_a_sections_identity(project):
    from ensemble.composition.run import compose

    outline = project.outline(SECTIONS[:1])
    first = compose(project.cfg, outline, seed=2)
    outline.write_text("precision: fp32\n" + outline.read_text(encoding="utf-8"), encoding="utf-8")
    again = compose(project.cfg, outline, seed=2)
    assert first.generated == [1] and again.generated == [1]  # not reused: another precision is another section
    # on a CPU auto is fp32 (the int8 output layer is for wide vocabularies, not this test model's)
    assert again.markdown == first.markdown
