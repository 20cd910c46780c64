"""Each KLUE-style cleaning rule alone, then composed by clean_text with its toggles."""

from __future__ import annotations

import pytest

from ensemble.config.project import CleanConfig
from ensemble.corpus.clean import (
    clean_text,
    collapse_repeats,
    normalize_punctuation,
    normalize_whitespace,
    remove_copyright,
    remove_hashtags,
    remove_mentions,
    remove_photo_captions,
    replace_emails,
    replace_urls,
    strip_control_chars,
)


def test_strip_control_chars_keeps_newlines_and_turns_tabs_into_spaces():
    text = "가\t나\x07다\u200b라\ufeff마\x00바\ufffd\r\n사\u2028아\n"
    assert strip_control_chars(text) == "가 나다라마바\n사\n아\n"


def test_emails_become_a_token():
    assert replace_emails("문의: hong.gildong@yna.co.kr 로 보내세요") == "문의: [이메일] 로 보내세요"
    assert replace_emails("골뱅이 @ 혼자는 그대로") == "골뱅이 @ 혼자는 그대로"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("자세히는 https://example.com/a?b=1. 참고", "자세히는 [웹주소]. 참고"),
        ("www.naver.com, 그리고 naver.com/news 도", "[웹주소], 그리고 [웹주소] 도"),
        ("(https://ko.wikipedia.org/wiki/A_(b)) 끝", "([웹주소]) 끝"),
        ("원주율 3.14 와 파일 a.txt 는 그대로", "원주율 3.14 와 파일 a.txt 는 그대로"),
    ],
)
def test_urls_become_a_token(text, want):
    assert replace_urls(text) == want


def test_hashtags_are_removed_but_not_csharp_or_entities():
    assert remove_hashtags("제주 여행 #여행 #제주도 좋았다") == "제주 여행 좋았다"
    assert remove_hashtags("C# 과 &#123; 는 그대로") == "C# 과 &#123; 는 그대로"


def test_mentions_are_removed_but_not_emails():
    assert remove_mentions("@홍길동 님, 고마워요 @friend_1") == " 님, 고마워요"
    assert remove_mentions("메일 a@b.com 은 그대로") == "메일 a@b.com 은 그대로"


def test_copyright_lines_are_removed():
    text = "본문 첫 줄이다.\n홍길동 기자 ⓒ 연합뉴스 무단전재 및 재배포 금지\nCopyright 2024 All rights reserved.\n끝."
    assert remove_copyright(text) == "본문 첫 줄이다.\n끝."


def test_copyright_tail_of_a_long_line_is_cut_but_the_prose_stays():
    prose = "이야기가 길게 이어진다. " * 20
    assert remove_copyright(prose + "<저작권자 ⓒ 한겨레 무단전재>") == prose.rstrip()


def test_photo_captions_are_removed():
    text = "행사가 열렸다(사진=연합뉴스). [사진: 홍길동 기자] 좋았다 <사진 제공=시청>\n▲ 행사 모습\n끝"
    assert remove_photo_captions(text) == "행사가 열렸다. 좋았다\n끝"


def test_repeats_are_collapsed_to_max_repeat_but_numbers_are_not():
    assert collapse_repeats("ㅋㅋㅋㅋㅋ 좋아!!!!! 와아아아", 2) == "ㅋㅋ 좋아!! 와아아"
    assert collapse_repeats("ㅋㅋㅋㅋ", 1) == "ㅋ"
    assert collapse_repeats("인구 1000000 명", 2) == "인구 1000000 명"


def test_punctuation_is_normalised():
    got = normalize_punctuation("“안녕”　‘하세요’ ＡＢＣ１２３！ 그래서......그리고⋯ 친구ㆍ우정 – 끝")
    assert got == "\"안녕\" '하세요' ABC123! 그래서…그리고… 친구·우정 - 끝"


def test_whitespace_keeps_one_blank_line_between_paragraphs():
    assert normalize_whitespace("  첫   문단 \n 둘째 줄\n\n\n\n 새\u00a0문단  \n") == "첫 문단\n둘째 줄\n\n새 문단"


MESSY = "ㅋㅋㅋㅋ 연락은 a@b.com\n\n\n\n“좋아요”　#행복 @친구\n홍길동 기자 ⓒ 뉴스 무단전재\n사진(사진=뉴스) 끝...."


def test_clean_text_applies_every_rule():
    assert clean_text(MESSY, CleanConfig()) == 'ㅋㅋ 연락은 [이메일]\n\n"좋아요"\n사진 끝…'


def test_clean_none_leaves_text_unchanged():
    assert clean_text(MESSY, CleanConfig(mode="none")) == MESSY


@pytest.mark.parametrize(
    ("toggle", "survivor"),
    [
        ("emails", "a@b.com"),
        ("hashtags", "#행복"),
        ("mentions", "@친구"),
        ("copyright", "ⓒ 뉴스"),
        ("photo_captions", "(사진=뉴스)"),
        ("repeats", "ㅋㅋㅋㅋ"),
        ("punctuation", "“좋아요”"),
        ("whitespace", "\n\n\n\n"),
    ],
)
def test_each_toggle_turns_its_rule_off(toggle, survivor):
    assert survivor not in clean_text(MESSY, CleanConfig())
    assert survivor in clean_text(MESSY, CleanConfig(**{toggle: False}))


def test_urls_toggle():
    assert "[웹주소]" in clean_text("보기 https://a.kr/x 끝", CleanConfig())
    assert "https://a.kr/x" in clean_text("보기 https://a.kr/x 끝", CleanConfig(urls=False))


def test_control_chars_toggle():
    assert clean_text("가\x07나", CleanConfig()) == "가나"
    assert clean_text("가\x07나", CleanConfig(control_chars=False)) == "가\x07나"
