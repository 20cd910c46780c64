"""The README's library example, run for real: the whole pipeline from Python on the example project.

Every stage is a typed function exported from `ensemble` (values in, values out, progress through a callback);
the CLI commands are thin layers over exactly these. Sizes here are the smallest that still exercise each
stage (the `test` pretraining preset, a few training steps, two short sections); the README shows the same
calls with real settings.
"""

from __future__ import annotations

import math

import pytest
import yaml

import ensemble

STAGES = ("init_project", "build_index", "pretrain_base", "train_experts", "compose", "evaluate")

TOPICS = {
    "theme": "함께",
    "defaults": {
        "top_k": 20,
        "epochs": 1,
        "micro_batch_size": 4,
        "grad_accum": 1,
        "block_size": 64,
        "warmup_steps": 0,
        "gradient_checkpointing": False,
    },
    "topics": [
        {"name": "family", "title": "가족", "queries": ["가족 저녁", "할머니 어머니"]},
        {"name": "nature", "title": "자연", "queries": ["산 바다", "봄 계절"]},
    ],
}
OUTLINE = {
    "title": "함께 사는 이야기",
    "defaults": {"target_chars": 120, "max_new_tokens": 24, "candidates": 2, "max_steps": 24},
    "sections": [
        {"heading": "가족의 저녁", "expert": "family", "prompt": "우리 가족은 저녁마다 식탁에 모인다."},
        {"heading": "산과 바다", "expert": "nature", "prompt": "봄이 오면 우리는 함께 산에 오른다."},
    ],
}


class Recorder:
    """A progress callback: the library reports into it, nothing is printed."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.logs: list[str] = []

    def start(self, task: str, total: int | None = None) -> None:
        self.tasks.append(task)

    def advance(self, task: str, n: int = 1, info: str | None = None) -> None:
        pass

    def end(self, task: str, summary: str | None = None) -> None:
        pass

    def log(self, message: str) -> None:
        self.logs.append(message)


def test_the_stages_are_exported_from_the_package():
    missing = [name for name in STAGES if not hasattr(ensemble, name)]
    assert not missing, f"ensemble/__init__.py does not export {missing}"


@pytest.mark.slow
def test_library_pipeline_end_to_end(tmp_path, one_torch_thread):
    if not all(hasattr(ensemble, name) for name in STAGES):
        pytest.fail("the stage functions are not exported from `ensemble` yet")
    progress = Recorder()

    # --- the README example (with test-sized settings) ---
    project = ensemble.init_project(tmp_path / "hamkke")
    (project / "topics.yaml").write_text(yaml.safe_dump(TOPICS, allow_unicode=True), encoding="utf-8")
    (project / "outline.yaml").write_text(yaml.safe_dump(OUTLINE, allow_unicode=True), encoding="utf-8")
    cfg = ensemble.load_project(project / "ensemble.yaml")

    index = ensemble.build_index(cfg, progress=progress)
    base = ensemble.pretrain_base(cfg, preset="test", progress=progress)
    experts = ensemble.train_experts(cfg, project / "topics.yaml", progress=progress)
    doc = ensemble.compose(cfg, project / "outline.yaml", seed=0, progress=progress)
    essay = project / "essay.md"
    essay.write_text(doc.markdown, encoding="utf-8")
    report = ensemble.evaluate(cfg, essay, outline_path=project / "outline.yaml", progress=progress)
    # --- end of the example ---

    assert index.passages > 0 and (base / "config.json").is_file()
    assert [m.name for m in experts] == ["family", "nature"]
    assert all(m.val_perplexity_after < m.val_perplexity_before for m in experts)
    assert [s.heading for s in doc.sections] == ["가족의 저녁", "산과 바다"]
    assert isinstance(report, ensemble.Report)
    assert [s.heading for s in report.sections] == ["가족의 저녁", "산과 바다"]
    assert [s.expert for s in report.sections] == ["family", "nature"]
    assert report.notes == []  # every measure could be taken
    for s in report.sections:
        assert s.chars > 0 and s.rep_4 is not None and s.copy_rate is not None
        assert s.own_expert_rank in (1, 2)
        assert math.isfinite(s.perplexity) and math.isfinite(s.expert_perplexity)
    assert report.to_dict()["sections"][0]["heading"] == "가족의 저녁"
    assert "perplexity" in progress.tasks and "copy rate" in progress.tasks
