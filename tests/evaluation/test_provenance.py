"""Provenance over a real index and hand-made expert datasets (no model needed): a copied paragraph finds its
passage, and the own-dataset share counts the paragraphs whose nearest passage is in the expert's dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_kit import CORPUS, SOURCE, Project

from ensemble.composition.provenance import document_provenance, longest_shared_run
from ensemble.evaluation import evaluate
from ensemble.retrieval.base import open_retriever


def _passage_ids(cfg, texts: list[str]) -> list[str]:
    with open_retriever(cfg) as r:
        return [r.search(t, k=1)[0].id for t in texts]


def _write_dataset(cfg, expert: str, ids: list[str], texts: list[str]) -> None:
    d = Path(cfg.work_path) / "experts" / expert / "dataset"
    d.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in zip(ids, texts, strict=True)]
    (d / "train.jsonl").write_text("\n".join(rows[1:]) + "\n", encoding="utf-8")
    (d / "val.jsonl").write_text(rows[0] + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Project:
    """The evaluation corpus indexed, and a `family` expert dataset of the family passages (no adapter)."""
    from ensemble.retrieval.build import build_index

    p = Project(tmp_path_factory.mktemp("provenance") / "project", None)
    build_index(p.cfg)
    _write_dataset(p.cfg, "family", _passage_ids(p.cfg, CORPUS["family"]), CORPUS["family"])
    return p


def test_longest_shared_run_counts_consecutive_terms():
    assert longest_shared_run(list("abcdef"), list("xbcdy")) == 3
    assert longest_shared_run([], list("abc")) == 0
    assert longest_shared_run(list("ab"), list("cd")) == 0


def test_a_copied_paragraph_has_its_passage_as_top_source_with_a_long_shared_run(indexed):
    cfg = indexed.cfg
    [prov] = document_provenance(cfg, open_retriever(cfg), [(None, [SOURCE])])
    [para] = prov.paragraphs
    top = para.sources[0]
    assert top.doc_id == "lighthouse" and top.passage_id.startswith("lighthouse#")
    assert top.title == "lighthouse"  # text files have no title: the document id stands in
    assert top.shared_run > 30 and top.score > 0 and not top.in_expert_dataset
    assert all(s.shared_run < top.shared_run for s in para.sources[1:])
    assert prov.own_dataset_share is None  # no expert: no dataset to compare with


def test_own_dataset_share_counts_paragraphs_whose_top_source_is_in_the_dataset(indexed):
    cfg = indexed.cfg
    paragraphs = [CORPUS["family"][0], CORPUS["family"][5], CORPUS["nature"][3]]
    [prov] = document_provenance(cfg, open_retriever(cfg), [("family", paragraphs)])
    tops = [p.sources[0] for p in prov.paragraphs]
    assert [t.in_expert_dataset for t in tops] == [True, True, False]
    assert prov.own_dataset_share == pytest.approx(2 / 3)
    family_ids = set(_passage_ids(cfg, CORPUS["family"]))
    for p in prov.paragraphs:  # the dataset's best passages are always listed, flagged as such
        assert any(s.in_expert_dataset for s in p.sources)
        assert all(s.in_expert_dataset == (s.passage_id in family_ids) for s in p.sources)
        assert [s.score for s in p.sources] == sorted((s.score for s in p.sources), reverse=True)


def test_evaluate_reports_provenance_per_section_and_overall(indexed):
    family, nature = CORPUS["family"], CORPUS["nature"]
    doc = indexed.document(
        [("가족", f"{family[1]}\n\n{family[2]}\n\n{nature[0]}"), ("자연", f"{nature[1]}\n\n{nature[2]}")]
    )
    outline = indexed.outline([("가족", "family"), ("자연", "base")])
    report = evaluate(indexed.cfg, doc, outline_path=outline, perplexity=False)
    first, second = report.sections
    assert first.provenance.own_dataset_share == pytest.approx(2 / 3)
    assert second.provenance.own_dataset_share is None  # the base has no dataset
    assert report.overall.own_dataset_share == pytest.approx(2 / 3)
    data = report.to_dict()["sections"][0]["provenance"]
    assert [p["text"] for p in data["paragraphs"]] == [family[1], family[2], nature[0]]
    assert set(data["paragraphs"][0]["sources"][0]) == {
        "passage_id",
        "doc_id",
        "title",
        "score",
        "shared_run",
        "in_expert_dataset",
    }


def test_evaluate_reads_past_the_footnotes_of_compose_sources(indexed):
    family = CORPUS["family"]
    doc = indexed.root / "footnoted.md"
    doc.write_text(
        f"# 제목\n\n## 가족\n\n{family[1]}[^1]\n\n{family[2]}[^2]\n\n## Sources\n\n"
        "[^1]: family-01, passage family-01#0 (BM25 9.0, 20 shared terms)\n"
        "[^2]: family-02, passage family-02#0 (BM25 9.0, 20 shared terms)\n",
        encoding="utf-8",
    )
    report = evaluate(indexed.cfg, doc, perplexity=False)
    [section] = report.sections
    assert section.heading == "가족" and section.paragraphs == 2
    assert [p.text for p in section.provenance.paragraphs] == [family[1], family[2]]


def test_evaluate_without_an_index_skips_provenance_with_a_note(bare):
    doc = bare.document([("가족", CORPUS["family"][0])])
    report = evaluate(bare.cfg, doc, perplexity=False)
    assert report.sections[0].provenance is None and report.overall.own_dataset_share is None
    assert any(n.startswith("provenance skipped") for n in report.notes)
