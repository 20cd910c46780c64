"""Typed configuration files: strict pydantic models loaded from YAML with file:line errors."""

from .loader import StrictModel, load_model, parse_model
from .project import (
    CleanConfig,
    ElasticsearchConfig,
    IndexConfig,
    PassagesConfig,
    ProjectConfig,
    load_project,
)

__all__ = [
    "CleanConfig",
    "ElasticsearchConfig",
    "IndexConfig",
    "PassagesConfig",
    "ProjectConfig",
    "StrictModel",
    "load_model",
    "load_project",
    "parse_model",
]
