"""JSON Schemas of every config file, from the same models that validate them."""

from __future__ import annotations

from typing import Any


def config_schemas() -> dict[str, dict[str, Any]]:
    from .config.project import ProjectConfig

    out: dict[str, dict[str, Any]] = {"ensemble": ProjectConfig.model_json_schema()}
    try:  # later stages own their files' models
        from .training.config import TopicsFile

        out["topics"] = TopicsFile.model_json_schema()
    except ImportError:
        pass
    try:
        from .composition.config import OutlineFile

        out["outline"] = OutlineFile.model_json_schema()
    except ImportError:
        pass
    return out
