"""The shipped example, start to finish: init → build-index → pretrain-base → train-experts; every expert must
end with a lower validation perplexity than its base had on the same held-out passages."""

import json

from test_training_cli import invoke


def test_example_project_trains_six_experts_that_beat_the_base(tmp_path, capsys):
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
    for m in manifests:
        assert m["val_perplexity_after"] < m["val_perplexity_before"], m["name"]
        assert m["data"]["passages_val"] >= 2 and m["data"]["passages_train"] >= 10, m["data"]
