"""A composed markdown document → its title and sections (heading, paragraphs), the shape `compose` writes.

Only what `compose` produces needs to be understood: `# title`, `## heading` per section, paragraphs separated
by blank lines. Anything else (deeper headings, lists, quotes) is kept as paragraph text of its section;
fenced code blocks never start a section. The provenance footnotes of `compose --sources` are not text: a
paragraph's closing `[^n]` is dropped, and so is a closing `## Sources` section of footnote definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex as re

from ..composition.render import SOURCES_HEADING
from ..core.errors import EnsembleError

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# The backslash `compose` puts before a leading block marker so that a paragraph stays a paragraph.
_ESCAPED_START = re.compile(r"^\\(?=[#>+*=_-])|^(\d{1,9})\\(?=[.)])")
_FOOTNOTE_REF = re.compile(r"\[\^\d+\]$")
_FOOTNOTE_DEF = re.compile(r"^\[\^\d+\]:")


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: tuple[str, ...]  # each paragraph on one line, as the reader sees it
    line: int  # 1-based line of the `## heading`

    @property
    def text(self) -> str:
        """The body as `compose` counts it: paragraphs joined by a blank line."""
        return "\n\n".join(self.paragraphs)


@dataclass(frozen=True)
class MarkdownDocument:
    title: str | None
    sections: tuple[Section, ...]
    preamble: tuple[str, ...] = ()  # paragraphs between the title and the first section


def _unescape(paragraph: str) -> str:
    return _ESCAPED_START.sub(lambda m: m.group(1) or "", paragraph, count=1)


def _flush(lines: list[str], into: list[str]) -> None:
    if lines:
        into.append(_FOOTNOTE_REF.sub("", _unescape(" ".join(s.strip() for s in lines))))
        lines.clear()


def _is_sources(heading: str, line: int, paragraphs: list[str]) -> bool:
    return heading == SOURCES_HEADING and bool(paragraphs) and all(_FOOTNOTE_DEF.match(p) for p in paragraphs)


def parse_markdown(text: str, *, source: str | None = None) -> MarkdownDocument:
    """Title and `##` sections of `text`. A document without any `## heading` is an EnsembleError: there is
    nothing to evaluate per section."""
    title: str | None = None
    sections: list[tuple[str, int, list[str]]] = []
    preamble: list[str] = []
    current: list[str] = []
    fence: str | None = None

    def target() -> list[str]:
        return sections[-1][2] if sections else preamble

    for n, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.rstrip()
        if fence is not None:
            current.append(line)
            if line.lstrip().startswith(fence):
                fence = None
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)[:3]
            current.append(line)
            continue
        h = _ATX.match(line)
        if h and len(h.group(1)) <= 2:
            _flush(current, target())
            heading = " ".join((h.group(2) or "").split())
            if len(h.group(1)) == 1 and title is None and not sections:
                title = heading
            else:
                sections.append((heading, n, []))
            continue
        if not line.strip():
            _flush(current, target())
            continue
        current.append(line)
    _flush(current, target())
    if len(sections) > 1 and _is_sources(*sections[-1]):
        sections.pop()
    if not sections:
        raise EnsembleError(
            "no sections found: a composed document has a `## heading` per section "
            "(write one with `ensemble compose outline.yaml > essay.md`)",
            path=source,
        )
    return MarkdownDocument(
        title=title,
        sections=tuple(Section(h, tuple(ps), line) for h, line, ps in sections),
        preamble=tuple(preamble),
    )
