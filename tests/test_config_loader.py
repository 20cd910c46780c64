import pytest

from ensemble.config import load_project
from ensemble.core.errors import ConfigError


def _load(tmp_path, text):
    p = tmp_path / "ensemble.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_project(p)
    return str(e.value), p


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "corpus: [a]\nindex:\n  backend: embeded\n",
            3,
            "index.backend: Input should be 'embedded' or 'elasticsearch'",
        ),
        ("corpus: [a]\nindex:\n  anlyzer: nori\n", 3, "index.anlyzer: unknown key; did you mean 'analyzer'?"),
        ("corpus: [a]\nindex:\n\tanalyzer: nori\n", 3, "tab characters are not allowed"),
        ("corpus: [a]\nwork_dir: 'unclosed\n", None, "malformed YAML"),
        ("- a\n- b\n", 1, "expected a mapping of keys at the top level, got list"),
        ("corpus: a\npassages:\n  max_chars: -1\n", 3, "passages.max_chars: Input should be greater than 0 (got -1)"),
        ("corpus: a\ncorpus: b\n", 2, "corpus: duplicate key"),
        ("corpus: a\nindex: {k1: fast}\n", 2, "index.k1"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path, text, line, fragment):
    msg, p = _load(tmp_path, text)
    assert msg.startswith(str(p) + (f":{line}:" if line else ""))
    assert fragment in msg
    assert "\n" not in msg


def test_defaults_and_relative_paths(tmp_path):
    p = tmp_path / "sub" / "ensemble.yaml"
    p.parent.mkdir()
    p.write_text("corpus: corpus/\nclean: none\n", encoding="utf-8")
    cfg = load_project(p)
    assert cfg.corpus == ["corpus/"]
    assert cfg.clean.mode == "none"
    assert cfg.index.analyzer == "nori" and cfg.index.k1 == 1.2 and cfg.index.b == 0.75
    assert cfg.work_path == (tmp_path / "sub" / ".ensemble").resolve()
    assert cfg.index_path == cfg.work_path / "index"
    assert cfg.base_model_path == str(cfg.work_path / "base")


def test_missing_and_non_utf8_config(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_project(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_bytes("corpus: 가".encode("euc-kr"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_project(p)
