"""pretrain-base bounded by the tokens it trains on: a larger corpus is sampled, a smaller one gets its epochs,
and the manifest and summary say how much of the corpus the model saw."""

from __future__ import annotations

import dataclasses

import pytest

from ensemble.training.dataset import DataPassage, text_hash
from ensemble.training.pretrain import (
    PRESETS,
    PretrainPreset,
    planned_steps,
    pretrain_on_texts,
    sample_paragraphs,
    seen_text,
)

WORDS = ["가족", "친구", "마을", "바다", "저녁", "김장", "이웃", "학교", "편지", "산책", "명절", "우정"]


def corpus(paragraphs: int) -> list[str]:
    lines = [
        f"{WORDS[i % 12]}과 {WORDS[(i * 5) % 12]}이 함께 {WORDS[(i * 7) % 12]}에 갔다. {i}번째 이야기는 길다."
        for i in range(paragraphs)
    ]
    return ["\n".join(lines[i : i + 10]) for i in range(0, paragraphs, 10)]


def budgeted(tokens: int | None, epochs: float = 2) -> PretrainPreset:
    return dataclasses.replace(PRESETS["test"], epochs=epochs, max_steps=None, max_train_tokens=tokens)


def passages(n: int) -> list[DataPassage]:
    return [DataPassage(f"p{i}", f"문단 {i}", text_hash(f"문단 {i}")) for i in range(n)]


def test_sample_follows_hash_order_keeps_corpus_order_and_fits_the_budget():
    ps = passages(50)
    chosen = sample_paragraphs(ps, [10] * 50, 95)
    assert len(chosen) == 9
    assert [p.id for p in chosen] == [p.id for p in ps if p in chosen]  # corpus order
    assert {p.id for p in chosen} == {p.id for p in sorted(ps, key=lambda p: p.sha256)[:9]}
    assert sample_paragraphs(ps, [10] * 50, 10_000) == ps
    assert len(sample_paragraphs(ps, [100] * 50, 5)) == 1  # never nothing


def test_the_budget_bounds_the_steps_only_when_the_epochs_would_pass_it():
    tiny = PRESETS["tiny"]
    per_step = tiny.micro_batch_size * tiny.block_size
    assert planned_steps(tiny, 151) is None  # the example (~19k tokens): its 24 epochs, as before
    big = 1_000_000 // 2 // tiny.block_size  # a 1M-character corpus, ~2 characters per token
    assert planned_steps(tiny, big) == tiny.max_train_tokens // per_step
    assert PRESETS["small"].max_train_tokens > tiny.max_train_tokens  # --preset small: for users with time
    assert planned_steps(PRESETS["test"], 10_000) == PRESETS["test"].max_steps


def test_a_corpus_larger_than_the_budget_is_sampled_and_the_manifest_says_how_much(tmp_path):
    preset = budgeted(3_000)
    m = pretrain_on_texts(corpus(400), tmp_path / "base", preset)
    seen = m["data"]["corpus_seen"]
    assert seen["paragraphs"] < seen["paragraphs_total"] and 0 < seen["fraction"] < 0.7
    assert m["data"]["max_train_tokens"] == 3_000
    assert m["steps"] == 3_000 // (preset.micro_batch_size * preset.block_size)
    assert m["tokens_seen"] <= 3_000 and seen["passes"] <= 1.0
    assert m["val_perplexity_after"] < m["val_perplexity_before"]
    assert seen_text(seen).startswith(f"trained on {100 * seen['fraction']:.0f}% of the corpus (")


def test_a_corpus_within_the_budget_is_seen_whole_for_its_epochs(tmp_path):
    m = pretrain_on_texts(corpus(60), tmp_path / "base", budgeted(1_000_000, epochs=2))
    seen = m["data"]["corpus_seen"]
    assert seen["fraction"] == 1.0 and seen["paragraphs"] == seen["paragraphs_total"]
    assert seen["passes"] == pytest.approx(2, abs=0.35)
