"""Reading back the markdown `compose` writes."""

import pytest

from ensemble.composition.render import render
from ensemble.core.errors import EnsembleError
from ensemble.evaluation.markdown import parse_markdown


def test_round_trip_of_a_composed_document():
    sections = [
        ("가족의 저녁", [["우리는 함께 먹었다.", "맛있었다."], ["다음 날도 그랬다."]]),
        ("목록처럼 보이는 문단", [["- 이것은 목록이 아니다.", "그냥 문장이다."], ["1. 번호도 아니다."]]),
        ("빈 섹션", []),
    ]
    doc = parse_markdown(render("함께 사는 이야기", sections))
    assert doc.title == "함께 사는 이야기"
    assert [s.heading for s in doc.sections] == ["가족의 저녁", "목록처럼 보이는 문단", "빈 섹션"]
    assert doc.sections[0].paragraphs == ("우리는 함께 먹었다. 맛있었다.", "다음 날도 그랬다.")
    assert doc.sections[0].text == "우리는 함께 먹었다. 맛있었다.\n\n다음 날도 그랬다."
    # compose escapes block markers; the reader sees the text as written
    assert doc.sections[1].paragraphs == ("- 이것은 목록이 아니다. 그냥 문장이다.", "1. 번호도 아니다.")
    assert doc.sections[2].paragraphs == ()


def test_hand_written_markdown_lines_and_fences():
    text = (
        "\ufeff# Title #\n\nintro line\n\n## One\nfirst line\nsecond line\n\n```\n## not a heading\n```\n\n"
        "### deeper\n\n## Two\n\ntext\n"
    )
    doc = parse_markdown(text)
    assert doc.title == "Title"
    assert doc.preamble == ("intro line",)
    assert [s.heading for s in doc.sections] == ["One", "Two"]
    assert doc.sections[0].paragraphs[0] == "first line second line"
    assert "## not a heading" in doc.sections[0].paragraphs[1]
    assert doc.sections[0].line == 5 and doc.sections[1].line == 15


@pytest.mark.parametrize("text", ["", "just a paragraph\n", "# Only a title\n\nand text\n"])
def test_a_document_without_sections_is_an_error(text):
    with pytest.raises(EnsembleError, match="no sections found"):
        parse_markdown(text, source="essay.md")
