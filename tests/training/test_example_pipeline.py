"""The shipped example, start to finish: init → build-index → pretrain-base → train-experts; most experts end
with a lower validation perplexity than their base had on the same held-out passages, each keeps its best
validation, and one that did not beat the base says so."""

import json

import pytest
from test_training_cli import invoke


def test_example_project_trains_six_experts_that_keep_their_best_validation(tmp_path, capsys):
    proj = tmp_path / "ex"
    assert invoke(capsys, "init", str(proj))[0] == 0
    cfg = ("-c", str(proj / "ensemble.yaml"))
    code, _, err = invoke(capsys, *cfg, "build-index")
    assert code == 0, err
    code, out, err = invoke(capsys, *cfg, "pretrain-base")
    assert code == 0 and out == "", err
    base = json.loads((proj / ".ensemble" / "base" / "manifest.json").read_text())
    assert base["val_perplexity_after"] < base["val_perplexity_before"] / 2

    code, out, err = invoke(capsys, *cfg, "train-experts", str(proj / "topics.yaml"), "--json")
    assert code == 0, err
    manifests = json.loads(out)  # stdout holds nothing but the JSON
    assert [m["name"] for m in manifests] == ["family", "friends", "village", "nature", "work", "table"]
    # pretrain-base has seen every passage, the experts' validation passages included, so on this tiny base an
    # expert gains a few percent at most, and a topic with ~3 validation passages may gain nothing.
    improved = [m["name"] for m in manifests if m["val_perplexity_after"] < m["val_perplexity_before"]]
    assert len(improved) >= 4, [(m["name"], m["val_perplexity_before"], m["val_history"]) for m in manifests]
    for m in manifests:
        assert m["improved"] == (m["name"] in improved)
        assert m["val_perplexity_after"] == pytest.approx(min(h["perplexity"] for h in m["val_history"]), rel=1e-6)
        assert m["data"]["passages_val"] >= 2 and m["data"]["passages_train"] >= 10, m["data"]
