"""The analyzers give the terms Elasticsearch gives: hand-checked cases and a gold file from Lucene's Nori."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from ensemble.core.errors import ConfigError, EnsembleError
from ensemble.text.analyzers import (
    ANALYZERS,
    Token,
    adv_analyzer_name,
    analyze,
    analyze_many,
    analyze_tokens,
    get_analyzer,
)

DATA = Path(__file__).parent / "data"


# --- nori --------------------------------------------------------------------------------------


def test_nori_drops_particles_and_adverbs_nori_adv_keeps_adverbs():
    assert analyze("희망과 함께", "nori") == ["희망"]
    assert analyze("희망과 함께", "nori_adv") == ["희망", "함께"]


def test_nori_decompounds_inflected_words_to_their_stem():
    assert analyze("아름다운", "nori") == ["아름답"]
    assert analyze("노래를 불렀다", "nori") == ["노래", "부르"]


def test_nori_reads_hanja_as_hangul():
    assert analyze("鄕歌", "nori") == ["향가"]
    assert analyze("鄕歌는 신라의 노래", "nori")[:1] == ["향가"]


def test_nori_discards_punctuation_but_keeps_emoji():
    assert analyze("좋아요!!! ... ~~ (진짜) «사과»", "nori") == ["좋", "진짜", "사과"]
    assert analyze("최고 😀", "nori") == ["최고", "😀"]


def test_nori_drops_laughter_of_any_length():
    for laugh in ("ㅋ", "ㅋㅋㅋ", "ㅋㅋㅋㅋㅋㅋㅋ", "ㅎㅎ", "ㅎㅎㅎㅎㅎ"):
        assert analyze(f"재밌다 {laugh}", "nori") == ["재밌"], laugh


def test_nori_lowercases_latin_and_keeps_numbers():
    assert analyze("Python과 GPU 2대", "nori") == ["python", "gpu", "2", "대"]


def test_nori_follows_lucenes_choice_between_equal_cost_entries():
    # mecab's own pick would be 거/가/들/뭐; Lucene's dictionary order gives 것/갈/듣/뭣
    assert analyze("아름다운 거 주세요", "nori")[:2] == ["아름답", "것"]
    assert analyze("그거 뭐야? 들어 봐", "nori") == ["그것", "뭣", "이", "듣", "보"]


def test_nori_keeps_an_unknown_word_whole():
    # no dictionary word starts at 퀄: Lucene makes one unknown word of the Hangul run
    assert analyze("퀄에서 봤다", "nori")[0] == "퀄에서"


def test_nori_treats_the_interpunct_as_punctuation_and_survives_nul():
    assert analyze("철수ㆍ영희는", "nori") == ["철수", "영희"]
    assert analyze("a\x00b 가족", "nori") == ["a", "b", "가족"]


def test_nori_survives_a_lone_surrogate_on_both_engines():
    from ensemble.text.nori import NoriAnalyzer

    for compiled in (True, False):
        analyzer = NoriAnalyzer(compiled=compiled)
        assert analyzer("가족\ud800과 함께") == analyzer("가족\ufffd과 함께")
        assert "가족" in analyzer("가족\ud800과 함께")
        assert [t[0] for t in analyzer.tokens("가족\udfff 저녁")] == analyzer("가족\udfff 저녁")


def test_empty_and_blank_text_give_no_terms():
    for name in ANALYZERS:
        assert analyze("", name) == []
        assert analyze("  \n\t ", name) == []


def test_nori_tokens_have_offsets_and_lucene_positions():
    text = "그거 뭐야? 들어봐 😀 Hello"
    tokens = analyze_tokens(text, "nori")
    assert [t.term for t in tokens] == ["그것", "뭣", "이", "듣", "보", "😀", "hello"]
    # stopped morphemes (야, 어, 아) leave position gaps, discarded punctuation does not
    assert [t.position for t in tokens] == [0, 1, 2, 4, 6, 8, 9]
    assert all(isinstance(t, Token) for t in tokens)
    assert text[tokens[-1].start : tokens[-1].end] == "Hello"
    assert text[tokens[0].start : tokens[0].end] == "그거"
    assert tokens[0].type == "NP"


def test_nori_compound_parts_get_their_own_offsets():
    text = "기숙사에 산다"
    tokens = analyze_tokens(text, "nori")
    assert [(t.term, text[t.start : t.end]) for t in tokens[:2]] == [("기숙", "기숙"), ("사", "사")]


def test_analyze_many_matches_analyze_one_by_one():
    texts = [
        "가족과 함께 밥을 먹었다.",
        "",
        "鄕歌 ㅋㅋ 😀",
        "퀄에서 iPhone을 샀다",
        "마을 사람들이 모였다",
    ] * 3
    for name in ANALYZERS:
        assert analyze_many(texts, name) == [analyze(t, name) for t in texts]


def _micro_f1(pairs) -> float:
    tp = n_ours = n_gold = 0
    for ours, gold in pairs:
        tp += sum((collections.Counter(ours) & collections.Counter(gold)).values())
        n_ours += len(ours)
        n_gold += len(gold)
    precision, recall = tp / n_ours, tp / n_gold
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("name", ["nori", "nori_adv"])
def test_nori_matches_lucene_nori_on_gold_sentences(name):
    # tokens from Lucene 8.8.1's Nori (mecab-ko-dic 2.0.3, the dictionary of Elasticsearch 7/8), made by
    # benchmarks/nori_parity.py --gold from tests/text/data/nori_sentences.tsv
    rows = [json.loads(line) for line in (DATA / "nori_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    ours = analyze_many([r["text"] for r in rows], name)
    assert _micro_f1(zip(ours, (r[name] for r in rows), strict=True)) >= 0.985


# --- standard / english / russian --------------------------------------------------------------


def test_standard_splits_on_unicode_word_boundaries_and_lowercases():
    assert analyze("John's don't Wi-Fi 3.14 a_b 한국어 中文 😀", "standard") == [
        "john's",
        "don't",
        "wi",
        "fi",
        "3.14",
        "a_b",
        "한국어",
        "中",
        "文",
        "😀",
    ]
    assert analyze("'quoted' (parens) — dash!", "standard") == ["quoted", "parens", "dash"]


def test_standard_cuts_words_longer_than_255_chars():
    terms = analyze("x" * 600, "standard")
    assert [len(t) for t in terms] == [255, 255, 90]


def test_english_possessive_stop_words_and_porter_stems():
    assert analyze("running", "english") == ["run"]
    assert analyze("caresses", "english") == ["caress"]
    assert analyze("John's", "english") == ["john"]
    assert analyze("The cat is on the mat", "english") == ["cat", "mat"]
    assert analyze("ponies generously", "english") == ["poni", "gener"]


def test_english_leaves_two_letter_words_unstemmed():
    assert analyze("as is us", "english") == ["us"]  # as/is are stop words; us is not stemmed to u
    assert analyze("ox es", "english") == ["ox", "es"]


def test_english_tokens_leave_gaps_for_stop_words():
    tokens = analyze_tokens("the running of the bulls", "english")
    assert [(t.term, t.position) for t in tokens] == [("run", 1), ("bull", 4)]
    assert tokens[0].type == "<ALPHANUM>"


def test_russian_stems_and_drops_stop_words():
    assert analyze("книгами и красивые", "russian") == ["книг", "красив"]
    assert analyze("Бежали домой", "russian") == ["бежа", "дом"]
    # Snowball as in Lucene 9 (Elasticsearch 8) folds ё to е
    assert analyze("ёлка", "russian") == analyze("елка", "russian")


# --- API ---------------------------------------------------------------------------------------


def test_unknown_analyzer_is_a_config_error_listing_the_names():
    for call in (
        lambda: get_analyzer("klingon"),
        lambda: analyze("x", "klingon"),
        lambda: adv_analyzer_name("klingon"),
    ):
        with pytest.raises(ConfigError) as err:
            call()
        assert isinstance(err.value, EnsembleError)
        for name in ANALYZERS:
            assert name in str(err.value)


def test_adv_analyzer_name_and_cached_analyzers():
    assert adv_analyzer_name("nori") == "nori_adv"
    assert adv_analyzer_name("nori_adv") == "nori_adv"
    assert adv_analyzer_name("english") == "english"
    assert get_analyzer("nori") is get_analyzer("nori")
    assert get_analyzer("nori")("가족과 함께") == ["가족"]


def test_cached_fast_path_and_token_walk_agree_with_a_cold_analyzer():
    from ensemble.text.nori import NoriAnalyzer

    texts = [line.partition("\t")[2] for line in (DATA / "nori_sentences.tsv").read_text("utf-8").splitlines()]
    cold = [NoriAnalyzer()(t) for t in texts]  # a fresh analyzer per text walks the lattice nodes
    warm = NoriAnalyzer()
    warm.analyze_many(texts)
    assert warm.analyze_many(texts) == cold  # second pass: cached lines, one lookup per morpheme
    assert [[t[0] for t in warm.tokens(x)] for x in texts] == cold


def test_one_parse_gives_both_indexed_fields():
    from ensemble.text.analyzers import analyze_many, index_fields

    texts = ["희망과 함께 아름다운 노래를 불렀다.", "우리는 늘 같이 밥을 먹었다.", ""]
    pairs = index_fields(texts, "nori")
    assert [p[0].split() for p in pairs] == analyze_many(texts, "nori")
    assert [p[1].split() for p in pairs] == analyze_many(texts, "nori_adv")
    assert pairs[0][1] != pairs[0][0] and "함께" in pairs[0][1].split()
    assert pairs[2] == ("", "")
    assert index_fields(["Running dogs"], "english") == [("run dog", "run dog")]
