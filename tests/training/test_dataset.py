"""Dataset building: union and de-duplication, held-out split, samples, condition dropout, unfreezing."""

import random

import pytest

from ensemble.retrieval.base import Hit
from ensemble.training.dataset import (
    LMDataset,
    TooFewPassages,
    collect,
    drop_condition_tokens,
    file_passages,
    make_sequences,
    pack,
    per_passage,
    split_train_val,
    start_ids,
    text_hash,
)
from ensemble.training.schedule import block_lr, lowest_trainable, unfreeze_plan


def _passages(n):
    return collect([[Hit(f"d{i}#0", f"d{i}", float(n - i), f"문단 {i}번 내용입니다.") for i in range(n)]])


def test_union_dedupes_by_id_and_by_text_keeping_best_score_and_every_query():
    q0 = [Hit("a#0", "a", 1.0, "같은 글"), Hit("b#0", "b", 5.0, "다른 글")]
    q1 = [Hit("a#0", "a", 3.0, "같은 글"), Hit("c#0", "c", 2.0, "같은   글")]  # c: same text, other spacing
    got = collect([q0, q1], extra=[("file:x#0", "다른 글", "x.txt"), ("file:x#1", "파일 글", "x.txt")])
    assert [p.id for p in got] == ["b#0", "a#0", "file:x#1"]
    a = got[1]
    assert a.score == 3.0 and a.queries == (0, 1)
    assert got[2].source == "x.txt" and got[2].score is None


def test_split_is_disjoint_deterministic_and_independent_of_order_and_of_other_passages():
    ps = _passages(60)
    train, val = split_train_val(ps, 0.2, 3)
    assert {p.sha256 for p in train}.isdisjoint({p.sha256 for p in val})
    assert len(train) + len(val) == 60 and len(val) >= 3
    shuffled = list(ps)
    random.Random(1).shuffle(shuffled)
    assert {p.id for p in split_train_val(shuffled, 0.2, 3)[1]} == {p.id for p in val}
    # A passage held out stays held out when more passages are retrieved (no leakage into training on growth).
    train2, val2 = split_train_val(_passages(90), 0.2, 3)
    assert {p.id for p in val} <= {p.id for p in val2}


def test_split_enforces_minimum_validation_size_and_refuses_too_little():
    train, val = split_train_val(_passages(5), 0.01, 2)
    assert len(val) == 2 and len(train) == 3
    with pytest.raises(TooFewPassages) as e:
        split_train_val(_passages(2), 0.1, 2)
    assert (e.value.have, e.value.need) == (2, 3)


def test_packing_fills_blocks_with_eos_separators_and_per_passage_keeps_passages_apart():
    seqs = make_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]], eos_id=0)
    packed = pack(seqs, 4)
    assert [s.ids for s in packed] == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 10], [0]]
    single = per_passage(seqs, 4)
    assert [s.ids for s in single] == [[1, 2, 3, 0], [4, 5, 0], [6, 7, 8, 9], [10, 0]]


def test_condition_format_masks_condition_from_loss_and_dropout_never_drops_special_tokens():
    TOPIC, TEXT, EOS = 901, 902, 0
    seqs = make_sequences([[11, 12, 13]], EOS, condition=(TOPIC, [51, 52, 53, 54], TEXT))
    s = seqs[0]
    assert s.ids == [TOPIC, 51, 52, 53, 54, TEXT, 11, 12, 13, EOS]
    ds = LMDataset(seqs)
    assert ds[0]["labels"] == [-100] * 6 + [11, 12, 13, EOS]
    rng = random.Random(0)
    dropped_any = False
    for _ in range(300):
        out = drop_condition_tokens(s, 0.3, rng)
        assert out.ids[0] == TOPIC and TEXT in out.ids and out.ids[-4:] == [11, 12, 13, EOS]
        assert set(out.ids) - {51, 52, 53, 54} == {TOPIC, TEXT, 11, 12, 13, EOS}
        dropped_any |= len(out.ids) < len(s.ids)
    assert dropped_any


def test_a_start_token_other_than_eos_opens_each_sequence_out_of_the_loss():
    BOS, EOS, TOPIC, TEXT = 2, 1, 901, 902
    seqs = make_sequences([[11, 12], [13]], EOS, bos_id=BOS)
    assert [s.ids for s in seqs] == [[BOS, 11, 12, EOS], [BOS, 13, EOS]]
    assert LMDataset(seqs)[0]["labels"] == [-100, 11, 12, EOS]
    [s] = make_sequences([[11]], EOS, condition=(TOPIC, [51], TEXT), bos_id=BOS)
    assert s.ids == [BOS, TOPIC, 51, TEXT, 11, EOS] and s.droppable == [False, False, True, False, False, False]
    assert drop_condition_tokens(s, 0.0, random.Random(0)).ids == [BOS, TOPIC, TEXT, 11, EOS]
    # GPT-2's start token is its end-of-text token: passages are already packed after it.
    assert [s.ids for s in make_sequences([[11]], EOS, bos_id=EOS)] == [[11, EOS]]


def test_every_block_opens_with_the_start_token_out_of_the_loss_packed_or_per_passage():
    BOS, EOS = 2, 1
    seqs = make_sequences([[11, 12, 13], [14, 15, 16, 17, 18]], EOS, bos_id=BOS)
    start = start_ids(BOS, EOS)
    packed = pack(seqs, 4, start)
    assert [s.ids for s in packed] == [[BOS, 11, 12, 13], [BOS, EOS, BOS, 14], [BOS, 15, 16, 17], [BOS, 18, EOS]]
    assert all(s.ids[0] == BOS and not s.in_loss[0] for s in packed)
    # Every text token and end-of-text is learned exactly once, the start tokens never.
    learned = [t for s in packed for t, m in zip(s.ids, s.in_loss, strict=True) if m]
    assert learned == [11, 12, 13, EOS, 14, 15, 16, 17, 18, EOS]
    single = per_passage(seqs, 4, start)
    assert [s.ids for s in single] == [[BOS, 11, 12, 13], [BOS, EOS], [BOS, 14, 15, 16], [BOS, 17, 18, EOS]]
    assert start_ids(EOS, EOS) == [] and start_ids(None, EOS) == []  # GPT-2: packed after end-of-text as before


def test_condition_dropout_is_redrawn_each_epoch_but_reproducible():
    seqs = make_sequences([[11]] * 8, 0, condition=(901, list(range(100, 120)), 902))
    ds = LMDataset(seqs, keep_prob=0.5, seed=3)
    epoch0 = [ds[i]["input_ids"] for i in range(8)]
    assert epoch0 == [ds[i]["input_ids"] for i in range(8)]
    ds.set_epoch(1)
    assert [ds[i]["input_ids"] for i in range(8)] != epoch0


def test_extra_file_split_at_blank_lines():
    parts = file_passages("notes.txt", "첫 문단.\n\n둘째 문단.\n\n\n" + "긴 문단 " * 300)
    assert parts[0] == ("file:notes.txt#0", "첫 문단.\n둘째 문단.")
    assert len(parts) == 2
    assert text_hash("a  b\n") == text_hash("a b")


def test_gradual_unfreezing_opens_blocks_top_down_and_layer_lr_decays():
    assert unfreeze_plan(24, 12, 3) == [20, 16, 12]
    assert unfreeze_plan(4, 2, 5) == [3, 2, 2, 2, 2]
    assert unfreeze_plan(4, 4, 2) == [4, 4]
    assert block_lr(1.0, 4, 3, 0.5) == 1.0 and block_lr(1.0, 4, 1, 0.5) == 0.25
    assert block_lr(1.0, 4, 4, 0.5) == 1.0  # head and final norm


def test_gradual_unfreezing_spreads_its_stages_over_the_steps_the_run_really_takes():
    # 3 epochs of 4 steps: one stage per epoch, as planned from epochs
    assert [lowest_trainable(24, 12, s, 12, 3) for s in (0, 3, 4, 7, 8, 11)] == [20, 20, 16, 16, 12, 12]
    # max_steps 3 inside one epoch of 10 steps: HF runs one epoch, so every trainable block trains from step 0
    assert [lowest_trainable(24, 12, s, 3, 1) for s in range(3)] == [12, 12, 12]
    # max_steps 5 over 2 epochs of 3 steps: both stages fit in the 5 steps
    assert [lowest_trainable(4, 0, s, 5, 2) for s in range(5)] == [2, 2, 2, 0, 0]
