"""The pure measures, on token lists whose answers can be worked out by hand."""

import pytest

from ensemble.evaluation import metrics as M


def test_rep_and_distinct_follow_their_definitions():
    toks = "a b a b a b c".split()  # bigrams: ab ba ab ba ab bc → 3 distinct of 6
    assert M.rep_n(toks, 2) == pytest.approx(1 - 3 / 6)
    assert M.distinct_n(toks, 2) == pytest.approx(3 / 7)  # Li et al.: distinct n-grams / tokens
    assert M.distinct_n(toks, 1) == pytest.approx(3 / 7)
    assert M.rep_n("a b c d e".split(), 2) == 0.0
    assert M.rep_n(["a"], 2) is None and M.distinct_n([], 1) is None


def test_planted_repetition_scores_high_rep_and_low_distinct():
    fresh = [f"w{i}" for i in range(40)]
    looped = (["나", "학교", "가", "친구", "만나"] * 8)[:40]
    assert M.rep_n(fresh, 4) == 0.0
    assert M.rep_n(looped, 4) > 0.8
    assert M.distinct_n(looped, 2) < 0.2 < M.distinct_n(fresh, 2)


def test_repeated_share_counts_later_copies_only():
    assert M.repeated_share(["x", "y", "x", "x"]) == pytest.approx(2 / 4)
    assert M.repeated_share([]) is None


def test_copy_stats_rate_and_longest_run():
    ref = M.ngram_set([list("abcdefgh")], 3)  # abc bcd cde def efg fgh
    toks = list("xxabcdezzfgh")
    st = M.copy_stats(toks, ref, 3)
    # 3-grams of the text: xxa xab abc bcd cde dez ezz zzf zfg fgh → abc bcd cde fgh copied
    assert (st.ngrams, st.copied) == (10, 4)
    assert st.rate == pytest.approx(0.4)
    assert st.longest == 5 and st.span == (2, 7)  # "abcde": three overlapping 3-grams
    assert "".join(toks[slice(*st.span)]) == "abcde"
    none = M.copy_stats(list("zzzz"), ref, 3)
    assert none.copied == 0 and none.longest == 0 and none.span is None
    assert M.copy_stats(list("ab"), ref, 3).rate is None
