"""evaluate stage: a composed document → length, repetition, copying, relevance, perplexity per section.

`ensemble.evaluate` names both this package and the stage function exported from `ensemble`. Whichever one an
import order leaves bound, `ensemble.evaluate(cfg, "essay.md")` must call the function, and dotted paths such
as `ensemble.evaluate.run` must keep resolving: so calling this package calls `evaluate`.
"""

import sys
import types

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


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
