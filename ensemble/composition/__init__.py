"""composition stage: outline.yaml → one base with every expert → batched sentence chaining → one document."""

from .config import GenerationParams, OutlineFile, load_outline
from .run import ComposedDocument, SectionResult, compose

__all__ = ["ComposedDocument", "GenerationParams", "OutlineFile", "SectionResult", "compose", "load_outline"]
