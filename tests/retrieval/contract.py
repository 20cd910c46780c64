"""The contract every retrieval backend keeps, as test functions over a fixture `open_backend`.

A backend's test module imports these and provides the fixture:

    from contract import *  # noqa: F403  (tests/retrieval is on sys.path; else `retrieval.contract`)

    @pytest.fixture
    def open_backend(tmp_path):
        cfg = ...  # a ProjectConfig with index.analyzer "nori" and a fresh index location
        return lambda create=True, rebuild=False: open_retriever(cfg, create=create, rebuild=rebuild)

Every call of `open_backend` opens the same index. The corpus below is small enough to check by eye: the
comments say which passages must come first and why.
"""

from __future__ import annotations

import contextlib
import math

import pytest

from ensemble.core.artifacts import sha256_text
from ensemble.core.errors import ArtifactError, ConfigError
from ensemble.corpus.types import Document, Passage
from ensemble.text.analyzers import analyze

K1, B = 1.2, 0.75

# doc id -> passages. 함께 ("together") is an adverb: the nori analyzer drops it from `text`, the
# adverb-keeping nori_adv keeps it in `text.adv`, which is what a theme must match.
CORPUS: dict[str, list[str]] = {
    "family-dinner": ["우리 가족은 매일 저녁 함께 밥을 먹는다. 엄마가 끓인 된장찌개는 언제나 맛있다."],
    "family-photo": ["할머니는 가족 사진을 거실 벽에 걸어 두셨다."],
    "friends-trip": ["친구들과 함께 바다로 여행을 떠났다.", "친구들은 밤새 이야기를 나누었다."],
    "friends-letter": ["오랜 친구에게 긴 편지를 썼다."],
    "village-kimjang": ["마을 사람들이 함께 모여 김장을 했다. 김장 김치는 이웃과 나누었다."],
    "village-festival": ["가을이 되면 마을 축제가 열린다."],
    "nature-mountain": ["주말마다 아버지와 산에 오른다. 산 정상에서 보는 바다는 아름답다."],
    "nature-spring": ["봄이 오면 들판에 꽃이 핀다."],
    "work-team": ["동료들과 함께 일하면 힘든 일도 금방 끝난다."],
    # Long on purpose: 45 terms, which Lucene's one-byte length norm stores as 44.
    "table-seollal": [
        "설날 아침이면 온 가족이 큰집에 모인다. 할아버지와 할머니께 세배를 드리고 덕담을 듣는다. "
        "어머니와 고모는 부엌에서 떡국을 끓이고 전을 부친다. 아이들은 마당에서 연을 날리고 윷놀이를 한다. "
        "저녁에는 모두 함께 둘러앉아 떡국을 먹으며 지난 한 해의 이야기를 나눈다. "
        "밤이 깊도록 웃음이 그치지 않는다."
    ],
}
TOGETHER = {"family-dinner#0", "friends-trip#0", "village-kimjang#0", "work-team#0", "table-seollal#0"}


def document(doc_id: str, texts: list[str]) -> tuple[Document, list[Passage]]:
    body = "\n\n".join(texts)
    doc = Document(id=doc_id, text=body, title=None, source=f"{doc_id}.txt", content_hash=sha256_text(body))
    return doc, [Passage(id=f"{doc_id}#{n}", doc_id=doc_id, n=n, text=t) for n, t in enumerate(texts)]


def all_passages(corpus: dict[str, list[str]] = CORPUS) -> dict[str, str]:
    return {f"{d}#{n}": t for d, texts in corpus.items() for n, t in enumerate(texts)}


@contextlib.contextmanager
def opened(open_backend, **kw):
    r = open_backend(**kw)
    try:
        yield r
    finally:
        r.close()


def load(open_backend, corpus: dict[str, list[str]] = CORPUS):
    """Index `corpus` and commit; returns the open retriever (the caller's test closes it via `opened`)."""
    r = open_backend(create=True)
    r.upsert([document(d, texts) for d, texts in corpus.items()])
    r.commit()
    return r


@pytest.fixture
def loaded(open_backend):
    r = load(open_backend)
    yield r
    r.close()


def ids(hits) -> list[str]:
    return [h.id for h in hits]


# --- Lucene's BM25, by hand ----------------------------------------------------------------------------


def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)  # 24


def int_to_byte4(i: int) -> int:
    """Lucene SmallFloat.intToByte4: the one-byte norm a field length is stored as."""
    return i if i < _NUM_FREE_VALUES else _NUM_FREE_VALUES + _long_to_int4(i - _NUM_FREE_VALUES)


def byte4_to_int(b: int) -> int:
    return b if b < _NUM_FREE_VALUES else _NUM_FREE_VALUES + _int4_to_long(b - _NUM_FREE_VALUES)


def lucene_bm25(tf: int, dl: int, n: int, N: int, avgdl: float) -> float:
    """Elasticsearch's _score of one term: idf · (k1 + 1) · tf / (tf + k1 · (1 − b + b · dl/avgdl)), dl as
    decoded from its one-byte norm."""
    idf = math.log(1 + (N - n + 0.5) / (n + 0.5))
    dl_q = byte4_to_int(int_to_byte4(dl))
    return idf * (K1 + 1) * tf / (tf + K1 * (1 - B + B * dl_q / avgdl))


def hand_score(term: str, passage_id: str, analyzer: str = "nori") -> float:
    terms = {pid: analyze(t, analyzer) for pid, t in all_passages().items()}
    N = len(terms)
    avgdl = sum(len(t) for t in terms.values()) / N
    n = sum(1 for t in terms.values() if term in t)
    mine = terms[passage_id]
    return lucene_bm25(mine.count(term), len(mine), n, N, avgdl)


# --- the contract --------------------------------------------------------------------------------------


def test_norm_encoding_is_lucenes():
    assert [byte4_to_int(int_to_byte4(i)) for i in (0, 1, 23, 24, 39, 40, 41, 45, 46, 47)] == [
        0, 1, 23, 24, 39, 40, 40, 44, 46, 46,
    ]  # fmt: skip
    assert int_to_byte4(2**31 - 1) == 255


def test_missing_index_asks_for_build_index(open_backend):
    with pytest.raises(ArtifactError, match="build-index"):
        open_backend(create=False)


def test_empty_index_has_nothing(open_backend):
    with opened(open_backend, create=True) as r:
        assert r.passage_count() == 0
        assert r.doc_hashes() == {}
        assert r.search("가족") == []


def test_ranking_is_what_a_reader_expects(loaded):
    # Only one passage mentions 김장 (twice).
    assert ids(loaded.search("김장")) == ["village-kimjang#0"]
    # Three passages mention 가족 once each: the shortest ranks first, the long 설날 passage last.
    assert ids(loaded.search("가족")) == ["family-photo#0", "family-dinner#0", "table-seollal#0"]
    # Both words beat either one alone.
    hits = loaded.search("친구 바다")
    assert hits[0].id == "friends-trip#0"
    assert {"friends-letter#0", "nature-mountain#0", "friends-trip#1"} <= set(ids(hits))
    top = hits[0]
    assert top.doc_id == "friends-trip" and top.text == CORPUS["friends-trip"][0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_score_is_lucene_bm25_by_hand(loaded):
    (hit,) = [h for h in loaded.search("가족") if h.id == "table-seollal#0"]
    # 45 terms, stored as 44 by the one-byte norm; 3 of 11 passages hold 가족.
    assert len(analyze(CORPUS["table-seollal"][0], "nori")) == 45
    assert hit.score == pytest.approx(hand_score("가족", "table-seollal#0"), rel=1e-5)
    idf = math.log(1 + (11 - 3 + 0.5) / (3 + 0.5))
    # A long passage scores below what one matching term can give at most.
    assert hand_score("가족", "table-seollal#0") < idf * (K1 + 1)
    (kimjang,) = loaded.search("김장")
    assert kimjang.score == pytest.approx(hand_score("김장", "village-kimjang#0"), rel=1e-5)


def test_theme_is_a_must_clause_on_the_adverb_keeping_field(loaded):
    # The main analyzer drops the adverb 함께, so as a query it matches nothing...
    assert loaded.search("함께") == []
    # ...but as a theme only passages containing it qualify, and of those only the ones holding a query term
    # (minimum_should_match 1): friends-trip, village-kimjang and work-team hold 함께 but not 가족.
    hits = loaded.search("가족", theme="함께", k=50)
    assert ids(hits) == ["family-dinner#0", "table-seollal#0"]
    # Scores add up as in Elasticsearch's bool query: must + should.
    theme_only = {h.id: h.score for h in loaded.search("", theme="함께", k=50)}
    query_only = {h.id: h.score for h in loaded.search("가족", k=50)}
    for h in hits:
        assert h.score == pytest.approx(theme_only[h.id] + query_only[h.id], rel=1e-5)
    expected = hand_score("함께", "table-seollal#0", "nori_adv") + hand_score("가족", "table-seollal#0")
    assert hits[1].score == pytest.approx(expected, rel=1e-5)


def test_a_passage_with_the_theme_but_no_query_term_is_not_returned(loaded):
    assert ids(loaded.search("김장 축제", theme="함께", k=50)) == ["village-kimjang#0"]  # village-festival lacks 함께
    assert ids(loaded.search("등산", theme="함께", k=50)) == []  # nature-mountain lacks 함께, the rest 등산


def test_a_blank_query_with_a_theme_searches_the_theme_alone(loaded):
    # The theme ranks alone: the long 설날 passage last.
    for blank in ("", "   "):
        hits = loaded.search(blank, theme="함께", k=50)
        assert set(ids(hits)) == TOGETHER and ids(hits)[-1] == "table-seollal#0"
    (hit,) = [h for h in hits if h.id == "table-seollal#0"]
    assert hit.score == pytest.approx(hand_score("함께", "table-seollal#0", "nori_adv"), rel=1e-5)
    # Words that all analyze away are not a blank query: as in Elasticsearch, the query clause then matches
    # nothing and so does the search.
    assert loaded.search("그리고", theme="함께", k=50) == []
    assert loaded.search("", k=50) == []  # no theme: nothing to search for


def test_clause_scores_are_the_parts_of_a_hits_score(loaded):
    hits = loaded.search("가족 저녁", theme="함께", k=50)
    parts = loaded.clause_scores([h.id for h in hits], "가족 저녁", theme="함께")
    assert set(parts) == {"theme", "query"}
    for h in hits:
        assert parts["theme"][h.id] > 0 and parts["query"][h.id] > 0
        assert parts["theme"][h.id] + parts["query"][h.id] == pytest.approx(h.score, rel=1e-5)
    # Only the passages asked about; a clause the search lacks is absent.
    assert set(loaded.clause_scores(["family-dinner#0"], "가족", theme="함께")["query"]) == {"family-dinner#0"}
    assert set(loaded.clause_scores(["family-photo#0"], "", theme="함께")) == {"theme"}
    only = loaded.clause_scores(["family-photo#0"], "가족")
    assert only == {"query": {"family-photo#0": pytest.approx(hand_score("가족", "family-photo#0"), rel=1e-5)}}
    assert loaded.clause_scores([], "가족") == {}


def test_text_without_terms_matches_nothing(loaded):
    assert loaded.search("그리고 또") == []  # only adverbs: no terms for `text`
    assert loaded.search("!!!") == []
    assert loaded.search("가족", theme="!!!") == []  # a must clause without terms matches nothing


def test_a_repeated_query_word_counts_twice(loaded):
    once = {h.id: h.score for h in loaded.search("가족")}
    twice = {h.id: h.score for h in loaded.search("가족 가족")}
    assert set(twice) == set(once)
    for pid, score in once.items():
        assert twice[pid] == pytest.approx(2 * score, rel=1e-5)


def test_k_limits_the_hits(loaded):
    assert ids(loaded.search("가족", k=2)) == ["family-photo#0", "family-dinner#0"]
    assert len(loaded.search("가족", k=500)) == 3
    for bad in (0, -1):
        with pytest.raises(ConfigError):
            loaded.search("가족", k=bad)


def test_hashes_counts_replace_and_delete(loaded, open_backend):
    assert loaded.doc_hashes() == {d: document(d, t)[0].content_hash for d, t in CORPUS.items()}
    assert loaded.passage_count() == 11
    # A new version of friends-trip with one passage instead of two: the old second passage must go.
    doc, passages = document("friends-trip", ["친구들과 함께 산으로 등산을 갔다."])
    loaded.upsert([(doc, passages)])
    loaded.delete(["village-kimjang"])
    loaded.commit()
    assert loaded.passage_count() == 9
    hashes = loaded.doc_hashes()
    assert hashes["friends-trip"] == doc.content_hash and "village-kimjang" not in hashes
    assert loaded.search("김장") == []
    assert "friends-trip#1" not in ids(loaded.search("이야기", k=50))
    (hit,) = loaded.search("등산")
    assert (hit.id, hit.text) == ("friends-trip#0", "친구들과 함께 산으로 등산을 갔다.")
    # Durable: a fresh handle sees the same.
    with opened(open_backend, create=False) as again:
        assert again.passage_count() == 9 and again.doc_hashes() == hashes


def test_upsert_twice_is_idempotent(loaded):
    loaded.upsert([document(d, t) for d, t in CORPUS.items()])
    loaded.commit()
    assert loaded.passage_count() == 11
    assert ids(loaded.search("김장")) == ["village-kimjang#0"]


def test_rebuild_is_published_by_commit(loaded, open_backend):
    small = {d: CORPUS[d] for d in ("family-photo", "nature-spring")}
    with opened(open_backend, rebuild=True) as fresh:
        fresh.upsert([document(d, t) for d, t in small.items()])
        with opened(open_backend, create=False) as reader:
            assert reader.passage_count() == 11  # the old index serves until the rebuild commits
        fresh.commit()
    with opened(open_backend, create=False) as reader:
        assert reader.passage_count() == 2
        assert set(reader.doc_hashes()) == set(small)
        assert ids(reader.search("가족")) == ["family-photo#0"]
