"""Sections → one markdown document: `# title`, `## heading` per section, paragraphs between, and with
provenance a footnote after each paragraph and a closing `## Sources` section of their definitions."""

from __future__ import annotations

from collections.abc import Sequence

import regex as re

SOURCES_HEADING = "Sources"

# Generated text must never turn into markdown structure: a paragraph starting with one of these
# would become a heading, a quote, a list item or a rule.
_BLOCK_START = re.compile(r"^(#{1,6}(?=\s|$)|>|[-+*](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))|={3,}|-{3,}|_{3,}|\*{3,})")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def escape_block(paragraph: str) -> str:
    """Backslash-escape a leading markdown block marker so the paragraph stays a paragraph."""
    m = _BLOCK_START.match(paragraph)
    if not m:
        return paragraph
    if m.group(0).isdigit():  # "1. " is a list only through its dot or parenthesis
        return m.group(0) + "\\" + paragraph[m.end() :]
    return "\\" + paragraph


def paragraph_text(sentences: Sequence[str]) -> str:
    return " ".join(_one_line(s) for s in sentences if s.strip())


def body_text(paragraphs: Sequence[Sequence[str]]) -> str:
    """A section's text as it appears in the document (its length is what target_chars counts)."""
    return "\n\n".join(escape_block(t) for t in (paragraph_text(p) for p in paragraphs) if t)


def paragraph_texts(paragraphs: Sequence[Sequence[str]]) -> list[str]:
    """A section's paragraphs as the document shows them (unescaped), empty ones left out."""
    return [t for t in (paragraph_text(p) for p in paragraphs) if t]


def render(
    title: str,
    sections: Sequence[tuple[str, Sequence[Sequence[str]]]],
    footnotes: Sequence[Sequence[str | None]] | None = None,
) -> str:
    """`sections`: (heading, paragraphs as lists of sentences) in document order. `footnotes`: per section, a
    note per paragraph of `paragraph_texts` (None: none); each becomes `[^n]` after its paragraph and a
    definition under a closing `## Sources`."""
    parts = [f"# {_one_line(title)}"]
    notes: list[str] = []
    for i, (heading, paragraphs) in enumerate(sections):
        parts.append(f"## {_one_line(heading)}")
        texts = [escape_block(t) for t in paragraph_texts(paragraphs)]
        for t, note in zip(texts, footnotes[i] if footnotes else [None] * len(texts), strict=True):
            if note:
                notes.append(f"[^{len(notes) + 1}]: {_one_line(note)}")
            parts.append(f"{t}[^{len(notes)}]" if note else t)
    if notes:
        parts += [f"## {SOURCES_HEADING}", "\n".join(notes)]
    return "\n\n".join(parts) + "\n"
