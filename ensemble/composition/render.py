"""Sections → one markdown document: `# title`, `## heading` per section, paragraphs between."""

from __future__ import annotations

from collections.abc import Sequence

import regex as re

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


def render(title: str, sections: Sequence[tuple[str, Sequence[Sequence[str]]]]) -> str:
    """`sections`: (heading, paragraphs as lists of sentences) in document order."""
    parts = [f"# {_one_line(title)}"]
    for heading, paragraphs in sections:
        parts.append(f"## {_one_line(heading)}")
        body = body_text(paragraphs)
        if body:
            parts.append(body)
    return "\n\n".join(parts) + "\n"
