"""The adapter saved is the one with the lowest validation perplexity; training stops when it stops helping;
an expert that never beat the base is flagged."""

import json

import pytest
from test_train_experts import StartedAt, StopAt
from training_support import topic

from ensemble.training.experts import train_experts

# On the tiny base, LoRA at this learning rate overshoots: validation perplexity over 8 epochs goes
# 121, 49, 51, 51, … (the base: 21), lowest after epoch 2.
OVERSHOOT = {"method": "lora", "learning_rate": 5e-2}


class Lines:
    def __init__(self):
        self.lines = []

    def start(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass

    def end(self, *a, **k):
        pass

    def log(self, message):
        self.lines.append(message)


def test_best_validation_is_kept_and_training_stops_after_patience(project, fake_retriever):
    topics = project.topics([topic("family")], defaults={**OVERSHOOT, "patience": 2})
    log = Lines()
    [m] = train_experts(project.cfg, topics, progress=log)
    history = [h["perplexity"] for h in m.val_history]
    assert len(history) == 4 < 8  # epochs 3 and 4 did not beat epoch 2: stopped after patience 2
    assert m.stopped_early and m.steps < 24
    best = min(history)
    assert history.index(best) == 1 and m.best_epoch == 2.0
    assert history[-1] > best  # the last model was not the best one
    assert m.val_perplexity_after == pytest.approx(best, rel=1e-6)  # the saved adapter is the best epoch's
    assert m.val_perplexity_by_epoch == history

    on_disk = json.loads((project.root / "work" / "experts" / "family" / "manifest.json").read_text())
    assert on_disk["best_epoch"] == 2.0 and on_disk["stopped_early"] is True and on_disk["improved"] is False
    assert on_disk["val_history"][1]["step"] == 6

    warnings = [line for line in log.lines if line.startswith("warning: family:")]
    assert len(warnings) == 1 and "improved: false" in warnings[0] and "learning_rate" in warnings[0]


def test_without_patience_every_epoch_runs(project, fake_retriever):
    topics = project.topics([topic("family")], defaults={**OVERSHOOT, "patience": 0})
    [m] = train_experts(project.cfg, topics)
    assert len(m.val_history) == 8 and not m.stopped_early
    assert m.val_perplexity_after == pytest.approx(min(h["perplexity"] for h in m.val_history), rel=1e-6)


def test_an_expert_that_improves_is_flagged_so(project, fake_retriever):
    topics = project.topics([topic("friends")], defaults={"method": "freeze", "learning_rate": 1e-2})
    [m] = train_experts(project.cfg, topics)
    assert m.improved is True and m.val_perplexity_after < m.val_perplexity_before


def test_eval_steps_validate_between_epochs(project, fake_retriever):
    topics = project.topics([topic("family")], defaults={**OVERSHOOT, "eval_steps": 2, "epochs": 2, "patience": 0})
    [m] = train_experts(project.cfg, topics)
    assert [h["step"] for h in m.val_history] == [2, 4, 6]


def test_a_resumed_run_keeps_the_best_and_stops_where_the_uninterrupted_one_did(project, fake_retriever):
    topics = project.topics([topic("family")], defaults={**OVERSHOOT, "patience": 2})
    with pytest.raises(KeyboardInterrupt):
        train_experts(project.cfg, topics, callbacks=[StopAt(10)])  # after the epoch-3 validation
    started = StartedAt()
    [m] = train_experts(project.cfg, topics, callbacks=[started])
    assert started.steps == [9]
    history = [h["perplexity"] for h in m.val_history]
    assert len(history) == 4 and m.stopped_early and m.best_epoch == 2.0  # the validations before the resume count
    assert m.val_perplexity_after == pytest.approx(min(history), rel=1e-6)


def test_eval_steps_and_save_steps_must_agree(project, fake_retriever):
    from ensemble.core.errors import ConfigError

    topics = project.topics([topic("family")], defaults={"eval_steps": 2, "save_steps": 4})
    with pytest.raises(ConfigError, match="eval_steps and save_steps differ"):
        train_experts(project.cfg, topics)
