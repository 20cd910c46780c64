"""BM25 over the experts' datasets in memory: the formula, the ranking of experts, the margin compose steers by."""

import math

import pytest

from ensemble.retrieval.relevance import Bm25, ExpertPassages, rank_experts


def test_bm25_matches_lucene_formula():
    docs = [["a", "b"], ["a", "c", "c", "d"], ["e"]]
    bm = Bm25(docs, k1=1.2, b=0.75)
    avgdl = 7 / 3
    idf_c = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf_norm = 2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 4 / avgdl))
    assert bm.scores(["c"]) == pytest.approx([0.0, idf_c * tf_norm, 0.0])
    assert bm.scores(["c", "c"])[1] == pytest.approx(2 * idf_c * tf_norm)  # each query occurrence counts
    assert bm.scores(["zzz"]) == [0.0, 0.0, 0.0]


def test_rank_experts_uses_each_experts_best_passages():
    docs = [["산", "바다"], ["산", "숲"], ["가족", "저녁"], ["가족", "식탁"], ["함께"]]
    owners = [{"nature"}, {"nature"}, {"family"}, {"family"}, {"family", "nature"}]
    bm = Bm25(docs)
    ranked = rank_experts(["가족", "저녁", "식탁"], bm, owners, ["nature", "family", "work"], top=2)
    assert [e for e, _ in ranked] == ["family", "nature", "work"]
    assert ranked[1][1] == 0.0 and ranked[2][1] == 0.0  # an expert with no passages scores zero


def test_margin_is_the_lead_over_the_best_other_expert_per_term():
    passages = {
        "family": ["가족 저녁 식탁", "가족 함께", "함께 걷는 길"],
        "nature": ["산 바다", "산 숲", "함께 걷는 길"],
        "work": ["회사 동료"],
    }
    experts = ExpertPassages(passages, lambda texts: [t.split() for t in texts], k1=1.2, b=0.75)
    assert experts.names == ["family", "nature", "work"]
    terms = ["가족", "식탁"]
    ranked = dict(experts.rank(terms, top=1))
    assert experts.margin(terms, "family", top=1) == pytest.approx((ranked["family"] - ranked["nature"]) / 2)
    assert experts.margin(terms, "family", top=1) > 0 > experts.margin(terms, "nature", top=1)
    assert experts.margin(["산"], "family", top=1) < 0
    assert experts.margin([], "family") == 0.0
    # the passage both hold is one document with two owners, not two copies skewing its idf
    assert len(experts.bm25) == 6
    assert experts.margin(["걷는"], "family") == 0.0
