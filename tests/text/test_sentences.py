"""Sentence splitting: both backends keep every character, split Korean endings and respect quotes."""

from __future__ import annotations

import re

import pytest

from ensemble.text import sentences as S
from ensemble.text.sentences import split_many, split_sentences

BACKENDS = ["kss", "rules"]

NOVEL = """그는 집으로 돌아갔다. 어머니가 "밥은 먹었니?" 하고 물었다.
나는 "네."라고 대답했다! 정말 배가 고팠어요…그래도 참았죠.

다음 날 아침이 밝았다. 우리는 함께 산에 올랐습니다. 왜 그랬을까요?"""


@pytest.fixture(scope="session")
def kss_loaded():
    if not S.kss_available():
        pytest.skip("kss is not installed")
    split_sentences("준비한다.", backend="kss")  # pays the one-time kss import here


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "kss":
        request.getfixturevalue("kss_loaded")
    return request.param


def test_splits_korean_prose_into_sentences(backend):
    got = split_sentences(NOVEL, backend=backend)
    assert got[0] == "그는 집으로 돌아갔다."
    assert '어머니가 "밥은 먹었니?" 하고 물었다.' in got
    assert "다음 날 아침이 밝았다." in got
    assert "우리는 함께 산에 올랐습니다." in got
    assert got[-1] == "왜 그랬을까요?"


def test_no_text_is_lost_and_sentences_are_slices_in_order(backend):
    text = NOVEL + "\n\n  Dr. Kim came home.  He said 'don't go.' Then left!  \n\t원주율은 3.14이다. 끝"
    got = split_sentences(text, backend=backend)
    assert _squash("".join(got)) == _squash(text)
    pos = 0
    for s in got:
        assert s == s.strip() and s
        pos = text.index(s, pos) + len(s)


def test_quotation_stays_whole_and_closing_quote_is_attached(backend):
    got = split_sentences('그가 말했다. "오늘은 날이 좋다. 산책하자." 나는 고개를 끄덕였다.', backend=backend)
    assert got == ["그가 말했다.", '"오늘은 날이 좋다. 산책하자."', "나는 고개를 끄덕였다."]
    got = split_sentences("“좋아요.” “싫어요.” 그녀가 말했다.", backend=backend)
    assert got == ["“좋아요.”", "“싫어요.”", "그녀가 말했다."]


def test_quote_glued_to_next_word_is_not_split(backend):
    assert split_sentences('나는 "네."라고 대답했다.', backend=backend) == ['나는 "네."라고 대답했다.']
    assert split_sentences("그건 '러브레터'였다. 그렇다.", backend=backend) == [
        "그건 '러브레터'였다.",
        "그렇다.",
    ]


def test_lines_are_never_joined(backend):
    assert split_sentences("첫 줄이고\n둘째 줄이다", backend=backend) == ["첫 줄이고", "둘째 줄이다"]


def test_latin_sentences_and_abbreviations(backend):
    got = split_sentences("Dr. Kim went home. He slept! Did he? Yes.", backend=backend)
    assert got == ["Dr. Kim went home.", "He slept!", "Did he?", "Yes."]


def test_empty_and_blank_inputs(backend):
    assert split_sentences("", backend=backend) == []
    assert split_sentences(" \n\t\n ", backend=backend) == []
    assert split_many([], backend=backend) == []
    assert split_many(["", "하나다."], backend=backend) == [[], ["하나다."]]


def test_split_many_matches_split_sentences(backend):
    texts = [NOVEL, "짧다.", "", "한 줄\n두 줄이다. 세 문장이다."]
    assert split_many(texts, backend=backend) == [split_sentences(t, backend=backend) for t in texts]


def test_rules_split_korean_endings_without_punctuation():
    got = split_sentences("비가 왔다 그래서 집에 있었어요 바다 위에 배가 떠 있었습니다 좋죠", backend="rules")
    assert got == ["비가 왔다", "그래서 집에 있었어요", "바다 위에 배가 떠 있었습니다", "좋죠"]


def test_rules_do_not_split_nouns_ending_like_endings():
    # 바다 (sea), 필요 (need), 아까 (earlier) end in 다/요/까 but are not sentence endings.
    text = "바다 위에서 필요 없는 짐을 아까 버렸다."
    assert split_sentences(text, backend="rules") == [text]


def test_auto_falls_back_to_rules_without_kss(monkeypatch):
    monkeypatch.setattr(S, "_load_kss", lambda: None)
    assert split_sentences("하나다. 둘이다.") == ["하나다.", "둘이다."]
    with pytest.raises(ImportError, match="kss"):
        split_sentences("하나다.", backend="kss")


def test_kss_is_called_once_per_batch(monkeypatch, kss_loaded):
    calls = []
    real = S._kss_split

    def spy(chunks):
        calls.append(list(chunks))
        return real(chunks)

    monkeypatch.setattr(S, "_kss_split", spy)
    split_many(["가다. 오다.\n셋이다.", "넷이다.", "다섯이다. 여섯이다."], backend="kss")
    assert calls == [["가다. 오다.", "셋이다.", "넷이다.", "다섯이다. 여섯이다."]]


def test_kss_output_that_is_not_a_slice_falls_back_to_rules(monkeypatch, kss_loaded):
    monkeypatch.setattr(S, "_kss_split", lambda chunks: [["바뀐 문장"] for _ in chunks])
    assert split_sentences("하나다. 둘이다.", backend="kss") == ["하나다.", "둘이다."]


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="rules"):
        split_sentences("가.", backend="nope")  # type: ignore[arg-type]
