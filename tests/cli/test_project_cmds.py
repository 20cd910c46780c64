import json

from ensemble.config import load_project


def test_init_writes_a_loadable_example_project(tmp_path, cli):
    dest = tmp_path / "proj"
    r = cli("init", str(dest))
    assert r.code == 0, r.stderr
    assert r.stdout == ""
    for name in ("ensemble.yaml", "topics.yaml", "outline.yaml", "README.md"):
        assert (dest / name).is_file(), name
    texts = [p.read_text(encoding="utf-8") for p in (dest / "corpus").rglob("*") if p.is_file()]
    assert sum(len(t) for t in texts) >= 30_000
    cfg = load_project(dest / "ensemble.yaml")
    assert cfg.index.backend == "embedded"


def test_init_refuses_non_empty_dir_without_force(tmp_path, cli):
    (tmp_path / "keep.txt").write_text("mine")
    r = cli("init", str(tmp_path))
    assert r.code == 2
    assert len(r.err_lines) == 1 and "--force" in r.stderr and str(tmp_path) in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert cli("init", str(tmp_path), "--force").code == 0
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_schema_prints_json_schema_of_each_file(cli):
    r = cli("schema")
    assert r.code == 0, r.stderr
    schemas = json.loads(r.stdout)
    assert {"ensemble", "topics", "outline"} <= set(schemas)
    assert schemas["ensemble"]["additionalProperties"] is False
    one = json.loads(cli("schema", "ensemble").stdout)
    assert "corpus" in one["properties"]


def test_unknown_command_and_schema_are_one_line_exit_2(cli):
    for args in (("bogus",), ("schema", "nope"), ("init",)):
        r = cli(*args)
        assert r.code == 2, args
        assert len(r.err_lines) == 1, r.stderr
        assert r.err_lines[0].startswith("error: ")
        assert "Traceback" not in r.stderr


def test_debug_shows_traceback(cli):
    r = cli("--debug", "schema", "nope")
    assert r.code == 2
    assert "Traceback" in r.stderr


def _local_base(directory, positions):
    """A base as a directory: a tokenizer trained on Korean text and a config (no weights needed by init)."""
    from transformers import GPT2Config

    from ensemble.training.pretrain import train_tokenizer

    texts = ["우리는 가족과 함께 저녁을 먹었다. 친구와 함께 학교에 갔다."] * 50
    train_tokenizer(texts, 300).save_pretrained(directory)
    GPT2Config(n_positions=positions, vocab_size=300, bos_token_id=0, eos_token_id=0).save_pretrained(directory)
    return directory


def test_init_with_a_base_model_writes_settings_for_a_pretrained_base(tmp_path, cli, monkeypatch):
    from ensemble.examples.pretrained import block_size_for
    from ensemble.training.config import load_topics

    base = _local_base(tmp_path / "bases" / "mine", positions=256)
    monkeypatch.chdir(tmp_path)
    r = cli("init", "proj", "--base-model", "bases/mine")
    assert r.code == 0, r.stderr
    assert "train-experts" in r.stderr and "pretrain-base" not in r.stderr
    cfg = load_project(tmp_path / "proj" / "ensemble.yaml")
    assert cfg.base_model_path == str(base.resolve())  # absolute: the yaml's paths are relative to the yaml
    params = load_topics(tmp_path / "proj" / "topics.yaml").defaults
    assert params.lr == 1e-3 and params.epochs == 3 and params.top_k == 50
    assert params.micro_batch_size * params.grad_accum == 8
    assert params.block_size == 256  # two long passages want more, but the model has 256 positions

    offline = cli("init", str(tmp_path / "hub"), "--base-model", "someone/korean-gpt")
    assert offline.code == 0, offline.stderr
    assert load_project(tmp_path / "hub" / "ensemble.yaml").base_model == "someone/korean-gpt"
    hub = load_topics(tmp_path / "hub" / "topics.yaml")
    assert hub.defaults.block_size == 1024  # one token per character assumed: 400-char passages
    assert [t.name for t in hub.topics] == ["family", "friends", "village", "nature", "work", "table"]

    plain = load_topics(tmp_path / "proj" / "topics.yaml").defaults.model_dump()
    assert block_size_for([200] * 10, None) == 512 and block_size_for([200] * 10, 300) == 256
    assert block_size_for([], None) == 256
    assert plain["lora"] == {"r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": None}
