"""Helpers for the training tests: a small Korean corpus with topical vocabulary, a stand-in retriever over
its passages, and a project directory with a topics.yaml writer."""

from __future__ import annotations

from pathlib import Path

import yaml
from tinylm import SENTENCE_FRAMES, TOPIC_WORDS, topic_corpus

from ensemble.retrieval.base import Hit

WORDS = {t: TOPIC_WORDS[t] for t in ("family", "friends", "village", "nature")}
FRAMES = SENTENCE_FRAMES


def make_corpus(per_topic: int = 14, seed: int = 0) -> dict[str, list[str]]:
    """Each topic has six sentences of its own; its passages are 3-4 of them in some order. A topic's text is
    thus learnable from its other passages, which is what an expert should pick up beyond the base."""
    return topic_corpus(WORDS, per_topic, seed)


CORPUS = make_corpus()


class FakeRetriever:
    """Scores a passage by how often the query's words occur in it; the theme must occur (like the real bool
    query's `must` clause)."""

    def __init__(self, passages: list[tuple[str, str]]) -> None:
        self.passages = passages

    def search(self, query: str, theme: str | None = None, k: int = 10) -> list[Hit]:
        hits = []
        for pid, text in self.passages:
            if theme and theme not in text:
                continue
            score = sum(text.count(w) for w in query.split())
            if score:
                hits.append(Hit(pid, pid.split("#")[0], float(score), text))
        hits.sort(key=lambda h: (-h.score, h.id))
        return hits[:k]

    def close(self) -> None:
        pass


# Fast settings: a few optimizer steps on the tiny base.
FAST = {
    "top_k": 10,
    "epochs": 8,
    "micro_batch_size": 2,
    "grad_accum": 1,
    "block_size": 64,
    "warmup_steps": 0,
    "gradient_checkpointing": False,
    "min_val_passages": 2,
    "val_fraction": 0.2,
}


class Project:
    def __init__(self, root: Path, base: Path) -> None:
        self.root = root
        self.config_path = root / "ensemble.yaml"
        doc = {"work_dir": "work", "base_model": str(base)}
        self.config_path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    @property
    def cfg(self):
        from ensemble.config import load_project

        return load_project(self.config_path)

    def topics(
        self,
        topics: list[dict],
        *,
        defaults: dict | None = None,
        theme: str | None = "함께",
        name: str = "topics.yaml",
    ) -> Path:
        doc: dict = {"defaults": {**FAST, **(defaults or {})}, "topics": topics}
        if theme:
            doc = {"theme": theme, **doc}
        path = self.root / name
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path


def topic(name: str, **over) -> dict:
    queries = {
        "family": ["가족 저녁", "어머니 아버지", "할머니 집"],
        "friends": ["친구 우정", "학교 편지"],
        "village": ["마을 이웃", "시장 잔치"],
        "nature": ["산 바다", "계절 봄"],
    }[name]
    return {"name": name, "title": name.capitalize(), "queries": queries, **over}
