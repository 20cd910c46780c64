"""evaluation stage: a composed document → length, repetition, copying, relevance, perplexity per section."""

from .markdown import MarkdownDocument, parse_markdown
from .report import OverallReport, Ranked, Report, SectionReport
from .run import evaluate

__all__ = [
    "MarkdownDocument",
    "OverallReport",
    "Ranked",
    "Report",
    "SectionReport",
    "evaluate",
    "parse_markdown",
]
