"""Passages: bounded windows of whole sentences, paragraph-aware, stable ids, one batched split."""

from __future__ import annotations

import re

import pytest

from ensemble.config.project import PassagesConfig
from ensemble.corpus.passages import split_passages, split_passages_many
from ensemble.corpus.types import Document
from ensemble.text.sentences import split_many


def rules(texts: list[str]) -> list[list[str]]:
    return split_many(texts, backend="rules")


def doc(text: str, doc_id: str = "d") -> Document:
    return Document(id=doc_id, text=text, title=None, source="t", content_hash="h")


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


SENTS = [f"{i}번째 문장은 함께 걷는 이야기를 담고 있다." for i in range(40)]
PARAS = "\n\n".join(" ".join(SENTS[i : i + 5]) for i in range(0, 40, 5))


def test_passages_respect_max_chars_and_keep_all_text():
    cfg = PassagesConfig(max_chars=120, min_chars=20)
    ps = split_passages(doc(PARAS), cfg, splitter=rules)
    assert len(ps) > 5
    assert all(len(p.text) <= 120 for p in ps)
    assert squash("".join(p.text for p in ps)) == squash(PARAS)


def test_ids_count_from_zero():
    ps = split_passages(doc(PARAS, "novel/ch1"), PassagesConfig(max_chars=200), splitter=rules)
    assert [p.id for p in ps] == [f"novel/ch1#{n}" for n in range(len(ps))]
    assert all(p.doc_id == "novel/ch1" and p.n == n for n, p in enumerate(ps))


def test_sentences_are_never_cut():
    ps = split_passages(doc(PARAS), PassagesConfig(max_chars=100, min_chars=0), splitter=rules)
    for p in ps:
        for part in re.split(r"\s*\n\n\s*|(?<=다\.)\s+", p.text):
            assert part in SENTS


def test_paragraph_breaks_are_preferred_and_kept():
    a = " ".join(SENTS[:4])  # ~130 chars
    b = " ".join(SENTS[4:8])
    ps = split_passages(doc(f"{a}\n\n{b}"), PassagesConfig(max_chars=200, min_chars=20), splitter=rules)
    assert [p.text for p in ps] == [a, b]  # not a + half of b
    both = split_passages(doc("첫 문단이다.\n\n둘째 문단이다.\n셋째 줄이다."), PassagesConfig(), splitter=rules)
    assert both[0].text == "첫 문단이다.\n\n둘째 문단이다.\n셋째 줄이다."


def test_long_sentence_is_cut_at_whitespace():
    long = " ".join(["아주긴낱말"] * 60) + "."  # 360 chars, no sentence end inside
    ps = split_passages(doc(long), PassagesConfig(max_chars=100, min_chars=10), splitter=rules)
    assert len(ps) >= 4
    assert all(len(p.text) <= 100 for p in ps)
    assert all(not p.text.startswith(" ") and "아주긴낱말" in p.text.split()[0] for p in ps)
    assert squash("".join(p.text for p in ps)) == squash(long)


def test_unbroken_text_is_cut_hard_at_max_chars():
    ps = split_passages(doc("가" * 250), PassagesConfig(max_chars=100, min_chars=0), splitter=rules)
    assert [len(p.text) for p in ps] == [100, 100, 50]


def test_tiny_trailing_piece_is_merged_back():
    text = " ".join(SENTS[:3]) + " 끝이다."
    ps = split_passages(doc(text), PassagesConfig(max_chars=200, min_chars=20), splitter=rules)
    assert [p.text for p in ps] == [text]
    # When merging would overflow, the tail borrows sentences instead of staying tiny.
    text = " ".join(SENTS[:3]) + "\n\n끝이다."  # 77 + 2 + 4 chars
    ps = split_passages(doc(text), PassagesConfig(max_chars=80, min_chars=20), splitter=rules)
    assert [p.text for p in ps] == [" ".join(SENTS[:2]), SENTS[2] + "\n\n끝이다."]


def test_a_short_document_is_one_passage_and_an_empty_one_none():
    assert [p.text for p in split_passages(doc("짧다."), PassagesConfig(), splitter=rules)] == ["짧다."]
    assert split_passages(doc(" \n\n "), PassagesConfig(), splitter=rules) == []


def test_deterministic():
    cfg = PassagesConfig(max_chars=150, min_chars=30)
    assert split_passages(doc(PARAS), cfg, splitter=rules) == split_passages(doc(PARAS), cfg, splitter=rules)


def test_many_documents_use_one_splitter_call_and_match_one_by_one():
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return rules(texts)

    docs = [doc(PARAS, "a"), doc("짧은 글이다.\n둘째 줄.", "b"), doc("", "c"), doc(PARAS[:300], "d")]
    cfg = PassagesConfig(max_chars=180, min_chars=20)
    many = split_passages_many(docs, cfg, splitter=counting)
    assert len(calls) == 1
    assert many == [split_passages(d, cfg, splitter=rules) for d in docs]
    assert many[2] == []


@pytest.mark.parametrize("max_chars", [60, 200, 500])
def test_with_kss_splitter(max_chars):
    from ensemble.text.sentences import kss_available

    if not kss_available():
        pytest.skip("kss is not installed")
    text = '어머니가 "밥은 먹었니? 어서 와." 하고 물었다. 나는 대답했다.\n\n' + PARAS
    ps = split_passages(doc(text), PassagesConfig(max_chars=max_chars, min_chars=10))
    assert all(len(p.text) <= max_chars for p in ps)
    assert squash("".join(p.text for p in ps)) == squash(text)
    assert any('"밥은 먹었니? 어서 와." 하고 물었다.' in p.text for p in ps)
