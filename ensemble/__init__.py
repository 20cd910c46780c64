"""expert-ensemble: write one long document with a team of topic experts.

The public API is one typed function per stage (values in, values out, progress through a callback); the CLI
commands are thin layers over exactly these. Importing this package loads no torch: each name is imported on
first use.

    import ensemble
    cfg = ensemble.load_project("ensemble.yaml")
    ensemble.build_index(cfg)
    plan = ensemble.plan_topics(cfg, "함께", 7)  # a draft of topics.yaml: plan.topics_yaml()
    ensemble.train_experts(cfg, "topics.yaml")
    doc = ensemble.compose(cfg, "outline.yaml", seed=0)
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ProjectConfig, load_project
from .core.errors import ArtifactError, BackendError, ConfigError, CorpusError, EnsembleError
from .core.progress import NullProgress, Progress

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access
_LAZY = {
    "init_project": "ensemble.examples",
    "build_index": "ensemble.retrieval.build",
    "IndexSummary": "ensemble.retrieval.build",
    "search": "ensemble.retrieval.build",
    "explain_search": "ensemble.retrieval.build",
    "ExplainedHit": "ensemble.retrieval.explain",
    "Hit": "ensemble.retrieval.base",
    "plan_topics": "ensemble.planning.plan",
    "Plan": "ensemble.planning.plan",
    "PlannedTopic": "ensemble.planning.plan",
    "pretrain_base": "ensemble.training.pretrain",
    "train_experts": "ensemble.training.experts",
    "ExpertManifest": "ensemble.training.registry",
    "TopicsFile": "ensemble.training.config",
    "load_topics": "ensemble.training.config",
    "compose": "ensemble.composition.run",
    "ComposedDocument": "ensemble.composition.run",
    "SectionResult": "ensemble.composition.run",
    "OutlineFile": "ensemble.composition.config",
    "GenerationParams": "ensemble.composition.config",
    "load_outline": "ensemble.composition.config",
    "evaluate": "ensemble.evaluation.run",
    "Report": "ensemble.evaluation.report",
    "SectionReport": "ensemble.evaluation.report",
    "OverallReport": "ensemble.evaluation.report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ArtifactError",
    "BackendError",
    "ComposedDocument",
    "ConfigError",
    "CorpusError",
    "EnsembleError",
    "ExpertManifest",
    "ExplainedHit",
    "GenerationParams",
    "Hit",
    "IndexSummary",
    "NullProgress",
    "OutlineFile",
    "OverallReport",
    "Plan",
    "PlannedTopic",
    "Progress",
    "ProjectConfig",
    "Report",
    "SectionReport",
    "SectionResult",
    "TopicsFile",
    "__version__",
    "build_index",
    "compose",
    "evaluate",
    "explain_search",
    "init_project",
    "load_outline",
    "load_project",
    "load_topics",
    "plan_topics",
    "pretrain_base",
    "search",
    "train_experts",
]
