"""Foundations shared by every stage: errors, atomic artifacts, progress, runtime."""
