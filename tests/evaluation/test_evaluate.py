"""`evaluate` on documents with known properties, over a real index, real (briefly trained) experts and a tiny
base model."""

from __future__ import annotations

import math

import pytest
from eval_kit import CORPUS, ORIGINAL, SOURCE, topical_text

from ensemble.core.errors import EnsembleError
from ensemble.evaluation import evaluate

REPEATED = " ".join(["할머니는 부엌에서 저녁을 준비했다.", "동생은 식탁을 닦았다."] * 5)


def test_copied_text_scores_high_copy_rate_and_original_text_low(project):
    doc = project.document([("베낀 글", SOURCE), ("새로 쓴 글", ORIGINAL)])
    r = evaluate(project.cfg, doc, perplexity=False)
    copied, original = r.sections
    assert copied.copy_rate > 0.9
    assert copied.longest_copy_chars > 0.8 * len(SOURCE)
    assert copied.longest_copy_text.startswith("등대지기 노인은")
    assert original.copy_rate == 0.0 and original.longest_copy == 0 and original.longest_copy_text is None
    assert 0.3 < r.overall.copy_rate < 0.7
    assert r.overall.longest_copy_chars == copied.longest_copy_chars


def test_planted_repetition_scores_high_rep_n(project):
    doc = project.document([("반복", REPEATED), ("새로 쓴 글", ORIGINAL)])
    rep, fresh = evaluate(project.cfg, doc, perplexity=False).sections
    assert rep.rep_4 > 0.5 and rep.rep_2 > 0.5
    assert fresh.rep_4 == 0.0
    assert rep.distinct_2 < 0.5 < fresh.distinct_2
    assert rep.repeated_sentences == pytest.approx(8 / 10)
    assert rep.sentences == 10


def test_each_section_ranks_the_expert_whose_data_it_was_written_from_first(project):
    sections = [("가족 이야기", "family"), ("친구 이야기", "friends"), ("자연 이야기", "nature")]
    doc = project.document([(h, topical_text(e)) for h, e in sections])
    outline = project.outline(sections)
    r = evaluate(project.cfg, doc, outline_path=outline, perplexity=False)
    for s, (_, expert) in zip(r.sections, sections, strict=True):
        assert s.expert == expert
        assert s.best_expert == expert and s.own_expert_rank == 1
        assert [x.expert for x in s.expert_ranking][0] == expert
        assert s.expert_ranking[0].score > s.expert_ranking[1].score
    assert (r.overall.own_expert_first, r.overall.sections_with_expert) == (3, 3)
    assert r.overall.mean_own_expert_rank == 1.0


def test_a_section_under_the_wrong_expert_does_not_rank_it_first(project):
    sections = [("가족 이야기", "nature")]
    doc = project.document([("가족 이야기", topical_text("family"))])
    r = evaluate(project.cfg, doc, outline_path=project.outline(sections), perplexity=False)
    assert r.sections[0].best_expert == "family"
    assert r.sections[0].own_expert_rank > 1
    assert r.overall.own_expert_first == 0


def test_perplexity_is_finite_and_lower_in_domain(project):
    in_domain = topical_text("family", sentences=12, seed=7)
    out_of_domain = "The committee postponed the quarterly budget review until the auditors filed their report."
    doc = project.document([("가족", in_domain), ("english", out_of_domain)])
    r = evaluate(project.cfg, doc)
    inside, outside = r.sections
    assert math.isfinite(inside.perplexity) and math.isfinite(outside.perplexity)
    assert inside.perplexity < outside.perplexity / 3
    assert inside.expert_perplexity is None  # no outline: no expert to score under
    assert r.overall.perplexity is not None


def test_sliding_window_scores_every_token_once(project, tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ensemble.evaluation.perplexity import text_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    tok = AutoTokenizer.from_pretrained(tiny_base)
    ids = tok(topical_text("nature", sentences=20), add_special_tokens=False)["input_ids"]
    assert len(ids) > 128  # longer than the tiny model's context: several windows
    whole = text_nll(model, ids, prefix=[tok.eos_token_id], max_length=128, stride=32)
    wider = text_nll(model, ids, prefix=[tok.eos_token_id], max_length=128, stride=96)
    assert whole.tokens == wider.tokens == len(ids)
    # more context per scored token (smaller stride) can only help a model trained on this kind of text
    assert whole.perplexity <= wider.perplexity * 1.05
    short = ids[:50]
    one = text_nll(model, short, prefix=[tok.eos_token_id], max_length=128)
    assert one.tokens == 50


def test_perplexity_under_each_sections_own_expert_is_lower_than_under_the_base(project):
    sections = [("가족", "family"), ("친구", "friends"), ("자연", "nature"), ("함께", "base")]
    texts = [topical_text(e, sentences=10, seed=3) if e != "base" else ORIGINAL for _, e in sections]
    doc = project.document([(h, t) for (h, _), t in zip(sections, texts, strict=True)])
    r = evaluate(project.cfg, doc, outline_path=project.outline(sections))
    for s in r.sections[:3]:  # two LoRA experts and one freeze expert
        assert s.expert_perplexity < s.perplexity, s.heading
    assert r.sections[3].expert == "base" and r.sections[3].expert_perplexity is None
    assert r.sections[3].own_expert_rank is None
    assert r.sections[3].best_expert is None  # its text shares no term with any expert's data
    assert r.overall.expert_perplexity < r.overall.perplexity


def test_scores_do_not_depend_on_which_experts_are_loaded(project):
    """The base score of a section is the same whether or not experts were put over the base after it."""
    text = topical_text("nature", sentences=6)
    alone = evaluate(project.cfg, project.document([("자연", text)], name="a.md"))
    sections = [("자연", "nature"), ("가족", "family")]
    doc = project.document([("자연", text), ("가족", topical_text("family"))], name="b.md")
    with_experts = evaluate(project.cfg, doc, outline_path=project.outline(sections))
    assert with_experts.sections[0].perplexity == pytest.approx(alone.sections[0].perplexity, rel=1e-5)


def test_missing_artifacts_skip_their_measure_with_a_note(bare):
    doc = bare.document([("반복", REPEATED)])
    r = evaluate(bare.cfg, doc)
    s = r.sections[0]
    assert s.rep_4 > 0.5  # what needs only the document is still measured
    assert s.copy_rate is None and s.expert_ranking is None and s.perplexity is None
    notes = " | ".join(r.notes)
    assert "copy rate skipped" in notes and "build-index" in notes
    assert "section relevance skipped" in notes and "train-experts" in notes
    assert "perplexity skipped" in notes and "pretrain-base" in notes


def test_an_untrained_expert_in_the_outline_is_a_note(project):
    sections = [("일터", "work")]
    doc = project.document([("일터", ORIGINAL)])
    r = evaluate(project.cfg, doc, outline_path=project.outline(sections))
    assert r.sections[0].expert == "work"
    assert r.sections[0].own_expert_rank is None and r.sections[0].expert_perplexity is None
    assert r.sections[0].perplexity is not None
    assert any("'work'" in n and "not trained" in n for n in r.notes)


def test_outline_sections_match_by_heading_when_the_document_differs(project):
    outline = project.outline([("가족 이야기", "family"), ("친구 이야기", "friends")])
    doc = project.document([("친구 이야기", topical_text("friends")), ("덧붙임", ORIGINAL), ("또", ORIGINAL)])
    r = evaluate(project.cfg, doc, outline_path=outline, perplexity=False)
    assert [s.expert for s in r.sections] == ["friends", None, None]
    assert any("'덧붙임' is not in the outline" in n for n in r.notes)


def test_bad_documents_are_errors_naming_the_file(project, tmp_path):
    with pytest.raises(EnsembleError, match="file not found") as e:
        evaluate(project.cfg, tmp_path / "nope.md")
    assert "nope.md" in str(e.value)
    flat = tmp_path / "flat.md"
    flat.write_text("그냥 글입니다.\n", encoding="utf-8")
    with pytest.raises(EnsembleError, match="no sections found"):
        evaluate(project.cfg, flat)
    binary = tmp_path / "image.md"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(EnsembleError, match="not UTF-8"):
        evaluate(project.cfg, binary)


def test_lengths_count_what_the_reader_sees(project):
    body = "첫 문단의 첫 문장이다. 둘째 문장이다.\n\n둘째 문단이다."
    doc = project.document([("길이", body)])
    s = evaluate(project.cfg, doc, perplexity=False).sections[0]
    assert (s.chars, s.sentences, s.paragraphs) == (len(body), 3, 2)
    assert CORPUS  # the corpus fixture is what the index was built from


def test_perplexity_in_bf16_is_close_to_fp32_and_the_report_says_which(project):
    sections = [("가족", "family"), ("자연", "nature")]
    doc = project.document([(h, topical_text(e, sentences=6, seed=5)) for h, e in sections])
    outline = project.outline(sections)
    fp32 = evaluate(project.cfg, doc, outline_path=outline)
    bf16 = evaluate(project.cfg, doc, outline_path=outline, precision="bf16")
    assert fp32.settings["perplexity_precision"] == "fp32" and bf16.settings["perplexity_precision"] == "bf16"
    for a, b in zip(fp32.sections, bf16.sections, strict=True):
        assert b.perplexity != a.perplexity  # really scored in another format
        assert b.perplexity == pytest.approx(a.perplexity, rel=0.1)
        assert b.expert_perplexity == pytest.approx(a.expert_perplexity, rel=0.1)
        assert b.expert_perplexity < b.perplexity
