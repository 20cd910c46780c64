"""The training commands as a user meets them: bad input is one `error:` line and exit code 2."""

import json

import pytest
import yaml
from training_support import CORPUS, topic

from ensemble.cli import app
from ensemble.training.pretrain import pretrain_base


def invoke(capsys, *args):
    """Run the CLI in this process (so the stand-in retriever is used); returns (code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        app(list(args), prog_name="ensemble")
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "body, where, words",
    [
        (
            "topics:\n  - name: family\n    queries: [가족]\n    epoch: 3\n",
            "topics.yaml:4: topics[0].epoch",
            ["unknown key", "epochs"],
        ),
        (
            "topics:\n  - name: family\n    queries: [가족]\n  - name: family\n    queries: [식구]\n",
            "topics.yaml:1: topics",
            ["duplicate topic name 'family' (topics[0] and topics[1])"],
        ),
        (
            "topics:\n  - name: family\n    queries: []\n",
            "topics.yaml:3: topics[0].queries",
            ["at least one query"],
        ),
        (
            "defaults:\n  precision: fp16\ntopics:\n  - name: family\n    queries: [가족]\n",
            "topics.yaml:2: defaults.precision",
            ["fp16", "GPU"],
        ),
        (
            "defaults:\n  deepspeed: zero3.json\ntopics:\n  - name: family\n    queries: [가족]\n",
            "topics.yaml:2: defaults.deepspeed",
            ["not found"],
        ),
    ],
    ids=["unknown-key", "duplicate-name", "empty-queries", "fp16-on-cpu", "missing-deepspeed-config"],
)
def test_bad_topics_file_is_one_line_exit_2(project, capsys, body, where, words):
    path = _write(project.root / "topics.yaml", body)
    code, out, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path))
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert where in line, line
    for w in words:
        assert w in line, line


def test_zero3_with_lora_is_refused_with_the_reason(project, capsys):
    _write(project.root / "z3.json", json.dumps({"zero_optimization": {"stage": 3}}))
    path = project.topics([topic("family")], defaults={"deepspeed": "z3.json"})
    code, _, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path))
    assert code == 2 and "empty LoRA adapters" in one_error_line(err)


def test_zero3_with_freeze_is_refused_with_the_reason(project, capsys):
    _write(project.root / "z3.json", json.dumps({"zero_optimization": {"stage": 3}}))
    path = project.topics([topic("family")], defaults={"deepspeed": "z3.json", "method": "freeze"})
    code, _, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path))
    line = one_error_line(err)
    assert code == 2 and "partition placeholders" in line and "deepspeed: zero2" in line
    assert "topics.yaml:" in line and "deepspeed" in line


def test_topic_retrieving_nothing_names_the_topic(project, fake_retriever, capsys):
    path = project.topics([topic("family"), {"name": "space", "queries": ["우주 로켓", "은하"]}])
    code, _, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path))
    line = one_error_line(err)
    assert code == 2 and "topics.yaml:" in line and "topics[1].queries" in line
    assert "'space' retrieved no passages" in line
    assert not (project.root / "work" / "experts" / "family" / "manifest.json").exists()  # nothing half-done


def test_topic_retrieving_too_little_says_how_many_it_needs(project, fake_retriever, capsys):
    path = project.topics([{"name": "family", "queries": ["어머니"], "top_k": 2}])
    code, _, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path))
    assert code == 2 and "only 2 distinct passages" in one_error_line(err) and "at least 3" in err


def test_missing_base_model_directory(project, capsys):
    cfg = project.root / "ensemble.yaml"
    cfg.write_text(yaml.safe_dump({"base_model": "./no-such-model"}), encoding="utf-8")
    path = project.topics([topic("family")])
    code, _, err = invoke(capsys, "-c", str(cfg), "train-experts", str(path))
    line = one_error_line(err)
    assert code == 2 and "ensemble.yaml" in line and "base_model" in line and "does not exist" in line


def test_no_base_model_at_all_points_to_pretrain_base(tmp_path, cli):
    _write(tmp_path / "ensemble.yaml", "work_dir: w\n")
    _write(tmp_path / "topics.yaml", "topics:\n  - name: family\n    queries: [가족]\n")
    r = cli("train-experts", "topics.yaml", cwd=tmp_path)
    assert r.code == 2 and "ensemble pretrain-base" in one_error_line(r.stderr)


def test_unknown_only_name_is_refused(project, capsys):
    path = project.topics([topic("family")])
    args = ("-c", str(project.config_path), "train-experts", str(path), "--only", "famly")
    code, _, err = invoke(capsys, *args)
    assert code == 2 and "no topic named 'famly'" in one_error_line(err)


def test_json_output_lists_manifests_and_summary_goes_to_stderr(project, fake_retriever, capsys):
    path = project.topics([topic("nature")], defaults={"max_steps": 2})
    code, out, err = invoke(capsys, "-c", str(project.config_path), "train-experts", str(path), "--json")
    assert code == 0, err
    [m] = json.loads(out)
    assert m["name"] == "nature" and m["val_perplexity_before"] > 0 and "validation perplexity" in err


def test_pretrain_base_on_the_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, passages in CORPUS.items():
        _write(corpus / f"{name}.txt", "\n\n".join(passages))
    _write(tmp_path / "ensemble.yaml", "corpus: corpus/\nwork_dir: work\n")
    from ensemble.config import load_project

    cfg = load_project(tmp_path / "ensemble.yaml")
    base = pretrain_base(cfg, preset="test")
    m = json.loads((base / "manifest.json").read_text())
    assert m["val_perplexity_after"] < m["val_perplexity_before"] * 0.5
    assert (base / "model.safetensors").is_file() and not list(base.glob("*.bin"))
    assert {"[TOPIC]", "[TEXT]"} <= set(json.loads((base / "tokenizer.json").read_text())["model"]["vocab"])
    mtime = (base / "model.safetensors").stat().st_mtime_ns
    code, _, err = invoke(capsys, "-c", str(tmp_path / "ensemble.yaml"), "pretrain-base", "--preset", "test")
    assert code == 0 and "--force" in err
    assert (base / "model.safetensors").stat().st_mtime_ns == mtime  # kept
    code, _, err = invoke(capsys, "-c", str(tmp_path / "ensemble.yaml"), "pretrain-base", "--preset", "huge")
    assert code == 2 and "unknown preset 'huge'" in one_error_line(err)
