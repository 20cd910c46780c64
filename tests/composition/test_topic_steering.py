"""Topic steering in compose: candidates judged also by how much more they read like their own expert's
passages than like another expert's; the experts it compares against are part of a steered section's identity."""

from __future__ import annotations

import json

from compose_kit import Project

from ensemble.composition import compose
from ensemble.retrieval.relevance import ExpertPassages
from ensemble.text.analyzers import analyze_many
from ensemble.training.registry import load_expert_passages

TOPICAL = ("family", "friends", "nature")


def own_margins(project: Project, doc) -> list[float]:
    cfg = project.cfg
    experts = ExpertPassages(
        {name: load_expert_passages(cfg, name) for name in TOPICAL},
        lambda texts: analyze_many(texts, cfg.index.analyzer),
    )
    return [
        experts.margin(analyze_many([" ".join(s for p in sec.paragraphs for s in p)], "nori")[0], sec.expert)
        for sec in doc.sections
        if sec.expert in TOPICAL
    ]


def test_steered_sections_read_more_like_their_own_experts(project):
    longer = {"target_chars": 200, "candidates": 4, "max_steps": 20}
    plain = compose(project.cfg, project.outline(defaults={**longer, "topic_weight": 0}), seed=0)
    steered = compose(project.cfg, project.outline(defaults={**longer, "topic_weight": 5}, name="steered.yaml"), seed=0)
    before, after = own_margins(project, plain), own_margins(project, steered)
    assert sum(after) > sum(before), (before, after)
    assert all(m > 0 for m in after), after


def test_retraining_another_expert_regenerates_the_sections_steered_against_it(project):
    sections = [
        {
            "heading": "가족의 저녁",
            "expert": "family",
            "prompt": "우리 가족은 저녁마다 식탁에 모인다.",
            "topic_weight": 1,
        },
        {"heading": "친구와 함께", "expert": "friends", "prompt": "친구와 나는 학교 운동장에서 만났다."},
        {"heading": "산과 바다", "expert": "nature", "prompt": "봄이 오면 우리는 함께 산에 오른다."},
    ]
    outline = project.outline(sections, defaults={"topic_weight": 0})
    compose(project.cfg, outline, seed=0)
    manifest = project.work / "experts" / "friends" / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["created_at"] = "later"
    manifest.write_text(json.dumps(data), encoding="utf-8")
    # friends' own section, and family's, which is steered away from friends; not nature's
    assert compose(project.cfg, outline, seed=0).generated == [1, 2]
