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
