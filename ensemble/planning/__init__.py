"""planning stage: draft topics.yaml and an outline from the passages that match a theme (no language model)."""

from .plan import Plan, PlannedTopic, plan_topics

__all__ = ["Plan", "PlannedTopic", "plan_topics"]
