"""The guards (repeat, copy) and the markdown renderer: pure functions."""

from __future__ import annotations

from ensemble.composition.guard import CopyGuard, RepeatGuard, ngrams, normalize
from ensemble.composition.render import body_text, escape_block, render

PASSAGE = "우리 집 저녁 식탁에는 오래된 규칙이 하나 있다. 식구가 모두 자리에 앉을 때까지 숟가락을 들지 않는다는 것이다."


def test_ngrams_ignore_punctuation_and_spacing():
    assert normalize("  우리는\n함께   간다. ") == "우리는 함께 간다."
    assert ngrams("우리는, 함께 간다.", 2, "word") == [("우리는", "함께"), ("함께", "간다")]
    assert ngrams("가 나.다", 2, "char") == ["가나", "나다"]
    assert ngrams("짧다.", 8, "word") == []


def test_repeat_guard_exact_and_near_repeats():
    g = RepeatGuard(["우리는 저녁마다 함께 밥을 먹었다."])
    assert g.rejects("우리는 저녁마다 함께 밥을 먹었다.")
    assert g.rejects("우리는  저녁마다 함께 밥을 먹었다!")  # spacing and punctuation do not hide a repeat
    assert g.rejects("우리는 저녁마다 함께 밥을 먹었다고.")  # high n-gram overlap
    assert not g.rejects("동생은 마당에서 강아지와 뛰어놀았다.")
    g.add("동생은 마당에서 강아지와 뛰어놀았다.")
    assert g.rejects("동생은 마당에서 강아지와 뛰어놀았다.")


def test_repeat_overlap_threshold_is_configurable():
    strict = RepeatGuard(["할머니는 늘 김치를 담그셨다."], n=3, overlap=0.3)
    loose = RepeatGuard(["할머니는 늘 김치를 담그셨다."], n=3, overlap=0.95)
    s = "할머니는 늘 된장을 끓이셨다."
    assert strict.rejects(s) and not loose.rejects(s)


def test_copy_guard_shared_word_8gram():
    g = CopyGuard([PASSAGE], n=8, unit="word")
    assert g.rejects("그날도 우리 집 저녁 식탁에는 오래된 규칙이 하나 있다.")
    assert not g.rejects("우리 집 저녁 식탁에는 새로운 반찬이 하나 늘었다.")  # shares only shorter runs
    assert not g.rejects("짧은 문장.")  # too short to hold an 8-gram


def test_copy_guard_char_ngrams_and_threshold():
    sentence = "식구가 모두 자리에 앉을 때까지 기다렸다."
    assert CopyGuard([PASSAGE], n=8, unit="char").rejects(sentence)
    share = CopyGuard([PASSAGE], n=8, unit="char").shared(sentence)
    assert 0 < share < 1
    assert not CopyGuard([PASSAGE], n=8, unit="char", threshold=share).rejects(sentence)
    assert not CopyGuard([], n=8).rejects(PASSAGE)


def test_render_title_headings_paragraphs():
    md = render("함께", [("가족", [["첫 문장.", "둘째 문장."], ["새 문단."]]), ("친구", [["끝."]])])
    assert md == "# 함께\n\n## 가족\n\n첫 문장. 둘째 문장.\n\n새 문단.\n\n## 친구\n\n끝.\n"


def test_generated_text_never_becomes_markdown_structure():
    assert escape_block("# 제목 같은 문장.") == "\\# 제목 같은 문장."
    assert escape_block("1. 목록 같은 문장.") == "1\\. 목록 같은 문장."
    assert escape_block("- 항목.") == "\\- 항목."
    assert escape_block("보통 문장.") == "보통 문장."
    md = render("제목", [("절", [["## 가짜 제목."], ["> 인용 아님."]])])
    assert [line for line in md.splitlines() if line.startswith("#")] == ["# 제목", "## 절"]
    assert body_text([["a.", "b."], ["c."]]) == "a. b.\n\nc."
