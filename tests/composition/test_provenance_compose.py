"""`compose` with provenance: footnotes only with --sources (valid markdown footnotes, a closing Sources list),
every paragraph's sources always in --json, and sections reused from the cache footnoted like new ones."""

from __future__ import annotations

import json

import pytest
import regex as re
from compose_kit import CORPUS, SECTIONS, Project

from ensemble.composition import compose
from ensemble.core.errors import ArtifactError

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
REF = re.compile(r"\[\^(\d+)\]")
DEF = re.compile(r"^\[\^(\d+)\]: (.+)$")


def _titled_corpus(p: Project) -> None:
    """Every compose-kit passage as a titled JSONL document, indexed; the experts' datasets keyed by the
    index's passage ids, as `train-experts` writes them."""
    import yaml

    from ensemble.retrieval.base import open_retriever
    from ensemble.retrieval.build import build_index

    rows = [
        {"id": f"{topic}-{i}", "title": f"{topic} 이야기 {i}", "text": text}
        for topic, texts in CORPUS.items()
        for i, text in enumerate(texts)
    ]
    (p.root / "corpus.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    config = yaml.safe_load(p.config_path.read_text(encoding="utf-8"))
    p.config_path.write_text(yaml.safe_dump({**config, "corpus": ["corpus.jsonl"]}), encoding="utf-8")
    build_index(p.cfg)
    with open_retriever(p.cfg) as r:
        ids = {text: r.search(text, k=1)[0].id for texts in CORPUS.values() for text in texts}
    for split in ("train", "val"):
        for path in p.work.glob(f"experts/*/dataset/{split}.jsonl"):
            lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            out = [json.dumps({"id": ids[x["text"]], "text": x["text"]}, ensure_ascii=False) for x in lines]
            path.write_text("\n".join(out) + "\n", encoding="utf-8")


@pytest.fixture
def indexed(project) -> Project:
    _titled_corpus(project)
    return project


def _compose(cli, p: Project, *extra: str):
    r = cli("-c", str(p.config_path), "compose", str(p.outline()), *extra, cwd=p.root, env=ONE_THREAD)
    assert r.code == 0, r.stderr
    return r.stdout


def _paragraphs(markdown: str) -> list[list[str]]:
    """Per `##` section, its paragraphs."""
    blocks = [b.strip() for b in markdown.split("\n\n")]
    out: list[list[str]] = []
    for b in blocks[1:]:
        if b.startswith("## "):
            out.append([])
        elif b:
            out[-1].append(b)
    return out


def assert_valid_footnotes(markdown: str) -> list[str]:
    """Every reference closes a paragraph, is numbered in order and has exactly one definition, one per line
    under a closing `## Sources`; markdown-it sees the Sources heading as the last one. Returns the definitions."""
    from markdown_it import MarkdownIt

    body, sources = markdown.split("\n## Sources\n\n")
    refs = [int(n) for n in REF.findall(body)]
    assert refs == list(range(1, len(refs) + 1)) and refs
    for block in (b.strip() for b in body.split("\n\n")[1:]):
        assert "\n" not in block and not block.startswith("[^")
        assert len(REF.findall(block)) <= 1 and (not REF.search(block) or REF.search(block).end() == len(block))
    defs = sources.rstrip("\n").split("\n")
    matches = [DEF.match(d) for d in defs]
    assert all(matches) and [int(m.group(1)) for m in matches] == refs
    tokens = MarkdownIt("commonmark").parse(markdown)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[-1] == "Sources" and headings[1:-1] == [s["heading"] for s in SECTIONS]
    return [m.group(2) for m in matches]


def test_footnotes_only_with_sources_and_json_always_carries_them(indexed, cli):
    plain = _compose(cli, indexed, "--seed", "2")
    assert "[^" not in plain and "## Sources" not in plain

    report = json.loads(_compose(cli, indexed, "--seed", "2", "--json"))
    assert report["markdown"] == plain  # the document itself stays as it was
    assert all(s["cached"] for s in report["sections"])  # reused sections get their sources too
    shown = _paragraphs(plain)
    for section, paragraphs in zip(report["sections"], shown, strict=True):
        prov = section["provenance"]
        assert [p["text"] for p in prov["paragraphs"]] == paragraphs
        for p in prov["paragraphs"]:
            assert p["sources"], p
            top = p["sources"][0]
            assert top["title"] == f"{top['doc_id'].split('-')[0]} 이야기 {top['doc_id'].split('-')[1]}"
            assert top["passage_id"].startswith(top["doc_id"] + "#") and top["shared_run"] >= 1
        expected_share = None if section["expert"] == "base" else prov["own_dataset_share"]
        assert prov["own_dataset_share"] == expected_share
        if section["expert"] != "base":
            assert 0 <= prov["own_dataset_share"] <= 1
            assert any(s["in_expert_dataset"] for p in prov["paragraphs"] for s in p["sources"])
    assert report["provenance_seconds"] >= 0

    footnoted = _compose(cli, indexed, "--seed", "2", "--sources")
    definitions = assert_valid_footnotes(footnoted)
    paragraphs = [p for s in report["sections"] for p in s["provenance"]["paragraphs"]]
    assert len(definitions) == len(paragraphs)
    for d, p in zip(definitions, paragraphs, strict=True):
        top = p["sources"][0]
        assert d.startswith(f"{top['title']}, passage {top['passage_id']} (BM25 ")
    assert re.sub(r"\[\^\d+\]", "", footnoted.split("\n## Sources\n")[0]) == plain


def test_sources_without_an_index_fail_before_generating_and_json_notes_it(project):
    with pytest.raises(ArtifactError):
        compose(project.cfg, project.outline(), provenance="footnotes")
    assert not (project.work / "compose" / "sections").exists()
    doc = compose(project.cfg, project.outline(), provenance="report")
    assert doc.provenance is None and "[^" not in doc.markdown
    assert doc.notes and doc.notes[0].startswith("provenance skipped: ")
    assert all(s["provenance"] is None for s in doc.report()["sections"])
