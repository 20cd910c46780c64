"""The bad-input matrix: every command, every kind of mistake a user makes, through the real CLI.

Each case must end with exit code 2 and exactly one non-empty line on stderr, `error: …`, that names the file
(with line and key where there is one) and says what to do; no traceback; and nothing in the project created
or changed (lock files aside)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import extras
import pytest
import yaml
from reliability_kit import (
    GEN_DEFAULTS,
    SECRET,
    SECTIONS,
    TOPICS,
    TRAIN_DEFAULTS,
    diff,
    dump_yaml,
    ensemble,
    permissions_enforceable,
    snapshot,
)

NO_CHMOD = permissions_enforceable()

# Words that tell the user what to do; every error line must contain one.
ACTION = re.compile(
    r"\b(fix|add|use|run|create|remove|choose|pass|set|rename|re-save|save|retrain|train|delete|check|start|"
    r"write|indent|wait|lower|raise|rephrase|give|list|split|close|quote|make|point|did you mean|expected|"
    r"must|needs?|see)\b",
    re.IGNORECASE,
)


@dataclass
class Case:
    id: str
    stage: str  # project copy to start from: none | fresh | indexed | trained
    args: list[str]
    expect: list[str]  # substrings the error line must hold (the project's own path shows as <project>)
    setup: Callable[[Path, object], None] | None = None
    debug: bool = False
    address_space: int | None = None
    permissions: bool = False  # the case relies on chmod: make it bind even for root
    max_seconds: float | None = None
    skip: str | None = None
    xfail: str | None = None
    env: dict = field(default_factory=dict)
    extra: str | None = None  # an optional extra's module the case needs (see tests/extras.py)


# -- setups -----------------------------------------------------------------------------------------------


def config_text(text: str) -> Callable[[Path, object], None]:
    def setup(root: Path, pipe) -> None:
        (root / "ensemble.yaml").write_text(text, encoding="utf-8")

    return setup


def config_update(**changes) -> Callable[[Path, object], None]:
    def setup(root: Path, pipe) -> None:
        doc = yaml.safe_load((root / "ensemble.yaml").read_text(encoding="utf-8"))
        for key, value in changes.items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        dump_yaml(root / "ensemble.yaml", doc)

    return setup


def topics_file(topics=None, defaults=None, raw: str | None = None, name: str = "topics.yaml", theme="함께"):
    def setup(root: Path, pipe) -> None:
        if raw is not None:
            (root / name).write_text(raw, encoding="utf-8")
            return
        doc = {"theme": theme, "defaults": {**TRAIN_DEFAULTS, **(defaults or {})}, "topics": topics or TOPICS}
        dump_yaml(root / name, {k: v for k, v in doc.items() if v is not None})

    return setup


def outline_file(sections=None, defaults=None, raw: str | None = None, name: str = "outline.yaml"):
    def setup(root: Path, pipe) -> None:
        if raw is not None:
            (root / name).write_text(raw, encoding="utf-8")
            return
        doc = {
            "title": "함께",
            "defaults": {**GEN_DEFAULTS, **(defaults or {})},
            "sections": sections or SECTIONS,
        }
        dump_yaml(root / name, doc)

    return setup


def corpus_file(name: str, data: bytes) -> Callable[[Path, object], None]:
    def setup(root: Path, pipe) -> None:
        (root / "corpus" / name).write_bytes(data)

    return setup


def empty_corpus(root: Path, pipe) -> None:
    shutil.rmtree(root / "corpus")
    (root / "corpus").mkdir()
    (root / "corpus" / "blank.jsonl").write_text("\n\n", encoding="utf-8")


def huge_single_line(root: Path, pipe) -> None:
    """1 GiB without a newline: 16 MiB of text, then a sparse tail (cheap on disk, still 1 GiB to read)."""
    path = root / "corpus" / "huge.txt"
    chunk = ("함께 걷는 길은 멀지 않다 " * 4096).encode("utf-8")
    with open(path, "wb") as f:
        written = 0
        while written < 16 * 1024 * 1024:
            f.write(chunk)
            written += len(chunk)
        f.truncate(1024**3)


def unreadable_corpus_dir(root: Path, pipe) -> None:
    d = root / "corpus" / "locked"
    d.mkdir()
    (d / "secret.txt").write_text("가족과 함께 걷는다.", encoding="utf-8")
    d.chmod(0)


def unreadable_corpus_file(root: Path, pipe) -> None:
    (root / "corpus" / "family-00.txt").chmod(0)


def read_only_work_dir(root: Path, pipe) -> None:
    (root / "work").mkdir()
    (root / "work").chmod(0o555)


def work_dir_is_a_file(root: Path, pipe) -> None:
    (root / "work").write_text("not a directory\n", encoding="utf-8")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def elasticsearch_unreachable(root: Path, pipe) -> None:
    config_update(
        index={
            "backend": "elasticsearch",
            "elasticsearch": {
                "url": f"http://127.0.0.1:{closed_port()}",
                "request_timeout": 2,
                "max_retries": 0,
            },
        }
    )(root, pipe)


def missing_base(root: Path, pipe) -> None:
    config_update(base_model="./models/nowhere")(root, pipe)


def other_base(root: Path, pipe) -> None:
    config_update(base_model=str(pipe.other_base))(root, pipe)


def corrupt_adapter(root: Path, pipe) -> None:
    path = root / "work" / "experts" / "family" / "adapter" / "adapter_model.safetensors"
    path.write_bytes(os.urandom(256))


def corrupt_manifest(root: Path, pipe) -> None:
    (root / "work" / "experts" / "family" / "manifest.json").write_text('{"name": "family", "meth', encoding="utf-8")


def non_empty_dir(root: Path, pipe) -> None:
    (root / "target").mkdir()
    (root / "target" / "mine.txt").write_text("keep me", encoding="utf-8")


def regular_file(root: Path, pipe) -> None:
    (root / "target").write_text("a file", encoding="utf-8")


def document(data: bytes | None = None) -> Callable[[Path, object], None]:
    def setup(root: Path, pipe) -> None:
        (root / "essay.md").write_bytes(pipe.essay.encode("utf-8") if data is None else data)

    return setup


def chain(*setups):
    def setup(root: Path, pipe) -> None:
        for s in setups:
            s(root, pipe)

    return setup


GOOD_YAML_HEAD = "corpus: [corpus/]\nwork_dir: work\n"

CASES = [
    # ---- ensemble.yaml, through build-index -----------------------------------------------------------
    Case("config-missing", "fresh", ["-c", "nowhere.yaml", "build-index"], ["nowhere.yaml", "not found"]),
    Case(
        "config-tab-indentation",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:4", "tab", "spaces"],
        config_text(GOOD_YAML_HEAD + "passages:\n\tmax_chars: 200\n"),
    ),
    Case(
        "config-unclosed-quote",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:", "malformed YAML"],
        config_text('corpus: [corpus/]\nwork_dir: "work\npassages:\n  max_chars: 200\n'),
    ),
    Case(
        "config-list-not-mapping",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:1", "mapping"],
        config_text("- corpus/\n- work\n"),
    ),
    Case(
        "config-unknown-key-did-you-mean",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:3", "pasages", "did you mean 'passages'"],
        config_text(GOOD_YAML_HEAD + "pasages:\n  max_chars: 200\n"),
    ),
    Case(
        "config-nested-unknown-key",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:4", "index.analyser", "did you mean 'analyzer'"],
        config_text(GOOD_YAML_HEAD + "index:\n  analyser: nori\n"),
    ),
    Case(
        "config-wrong-type",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:4", "passages.max_chars", "many"],
        config_text(GOOD_YAML_HEAD + "passages:\n  max_chars: many\n"),
    ),
    Case(
        "config-zero-size",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:4", "passages.max_chars", "greater than 0"],
        config_text(GOOD_YAML_HEAD + "passages:\n  max_chars: 0\n"),
    ),
    Case(
        "config-negative-k1",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:4", "index.k1"],
        config_text(GOOD_YAML_HEAD + "index:\n  k1: -1.0\n"),
    ),
    Case(
        "config-unknown-analyzer",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:4", "index.analyzer", "klingon"],
        config_text(GOOD_YAML_HEAD + "index:\n  analyzer: klingon\n"),
    ),
    Case(
        "config-duplicate-key",
        "fresh",
        ["build-index"],
        ["ensemble.yaml:3", "work_dir", "duplicate"],
        config_text(GOOD_YAML_HEAD + "work_dir: other\n"),
    ),
    Case(
        "config-not-utf8",
        "fresh",
        ["build-index"],
        ["ensemble.yaml", "UTF-8"],
        lambda root, pipe: (root / "ensemble.yaml").write_bytes(GOOD_YAML_HEAD.encode() + "# café\n".encode("latin-1")),
    ),
    Case(
        "config-debug-shows-traceback",
        "fresh",
        ["--debug", "build-index"],
        ["ensemble.yaml:3", "did you mean 'passages'"],
        config_text(GOOD_YAML_HEAD + "pasages:\n  max_chars: 200\n"),
        debug=True,
    ),
    # ---- corpus ----------------------------------------------------------------------------------------
    Case(
        "corpus-path-missing",
        "fresh",
        ["build-index"],
        ["ensemble.yaml", "corpus[0]", "not found"],
        config_text("corpus: [texts/]\nwork_dir: work\n"),
    ),
    Case(
        "corpus-not-utf8",
        "fresh",
        ["build-index"],
        ["corpus/latin1.txt:2", "UTF-8", "--skip-bad"],
        corpus_file("latin1.txt", "첫 줄은 괜찮다.\n".encode() + "deuxième ligne é\n".encode("latin-1")),
    ),
    Case(
        "corpus-binary-file",
        "fresh",
        ["build-index"],
        ["corpus/photo.txt:1", "binary"],
        corpus_file("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"),
    ),
    Case(
        "corpus-bad-jsonl-line",
        "fresh",
        ["build-index"],
        ["corpus/letters.jsonl:2", "JSON"],
        corpus_file("letters.jsonl", '{"id": "a", "text": "함께 쓴 편지"}\n{"id": "b", "text": \n'.encode()),
    ),
    Case("corpus-empty", "fresh", ["build-index"], ["ensemble.yaml", "corpus is empty"], empty_corpus),
    Case(
        "corpus-1GB-single-line",
        "fresh",
        ["build-index"],
        ["corpus/huge.txt:1", "longer than 10 MB"],
        huge_single_line,
        address_space=2 * 1024**3,
        max_seconds=60,
    ),
    Case(
        "corpus-unreadable-directory",
        "fresh",
        ["build-index"],
        ["locked", "permission"],
        unreadable_corpus_dir,
        permissions=True,
        skip=NO_CHMOD,
    ),
    Case(
        "corpus-unreadable-file",
        "fresh",
        ["build-index"],
        ["corpus/family-00.txt", "permission"],
        unreadable_corpus_file,
        permissions=True,
        skip=NO_CHMOD,
    ),
    Case(
        "work-dir-read-only",
        "fresh",
        ["build-index"],
        ["work", "permission", "work_dir"],
        read_only_work_dir,
        permissions=True,
        skip=NO_CHMOD,
    ),
    Case(
        "work-dir-is-a-file",
        "fresh",
        ["build-index"],
        ["work"],
        work_dir_is_a_file,
    ),
    Case(
        "elasticsearch-unreachable",
        "fresh",
        ["build-index"],
        ["127.0.0.1", "Elasticsearch"],
        elasticsearch_unreachable,
        max_seconds=60,
        extra="elasticsearch",
    ),
    # ---- search / analyze / schema / init ---------------------------------------------------------------
    Case("search-before-build-index", "fresh", ["search", "가족"], ["build-index"]),
    Case("search-k-zero", "indexed", ["search", "가족", "-k", "0"], ["k", "positive"]),
    Case(
        "search-elasticsearch-unreachable",
        "fresh",
        ["search", "가족"],
        ["127.0.0.1", "Elasticsearch"],
        elasticsearch_unreachable,
        max_seconds=60,
        extra="elasticsearch",
    ),
    Case("analyze-unknown-analyzer", "none", ["analyze", "함께", "--analyzer", "klingon"], ["klingon", "nori"]),
    Case("schema-unknown-name", "none", ["schema", "nope"], ["nope", "choose"]),
    Case("init-non-empty-dir", "none", ["init", "target"], ["target", "--force"], non_empty_dir),
    Case("init-onto-a-file", "none", ["init", "target"], ["target", "not a directory"], regular_file),
    Case("unknown-option", "fresh", ["build-index", "--rebuilt"], ["--rebuilt"]),
    # ---- pretrain-base ----------------------------------------------------------------------------------
    Case("pretrain-unknown-preset", "fresh", ["pretrain-base", "--preset", "huge"], ["huge", "tiny"]),
    # ---- train-experts ----------------------------------------------------------------------------------
    Case("topics-missing", "indexed", ["train-experts", "nowhere.yaml"], ["nowhere.yaml", "not found"]),
    Case(
        "topics-duplicate-names",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml", "duplicate topic name 'family'"],
        topics_file(topics=[TOPICS[0], {**TOPICS[1], "name": "family"}]),
    ),
    Case(
        "topics-empty-queries",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:", "topics[0].queries", "at least one query"],
        topics_file(topics=[{**TOPICS[0], "queries": []}]),
    ),
    Case(
        "topics-unknown-key-did-you-mean",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:", "qeries", "did you mean 'queries'"],
        topics_file(raw="topics:\n  - name: family\n    qeries: [가족]\n"),
    ),
    Case(
        "topics-wrong-type",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:4", "defaults.epochs", "lots"],
        topics_file(
            raw="theme: 함께\ndefaults:\n  top_k: 10\n  epochs: lots\ntopics:\n  - name: a\n    queries: [가족]\n"
        ),
    ),
    Case(
        "topics-zero-batch",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:", "micro_batch_size", "greater than 0"],
        topics_file(defaults={"micro_batch_size": 0}),
    ),
    Case(
        "topics-negative-block-size",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:", "block_size"],
        topics_file(defaults={"block_size": -5}),
    ),
    Case(
        "topics-list-not-mapping",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:1", "mapping"],
        topics_file(raw="- name: family\n  queries: [가족]\n"),
    ),
    Case(
        "topics-fp16-on-cpu",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:", "precision", "fp16"],
        topics_file(defaults={"precision": "fp16"}),
        skip=None,
    ),
    Case(
        "topics-only-unknown",
        "indexed",
        ["train-experts", "topics.yaml", "--only", "cooking"],
        ["--only", "cooking", "choose one of", "family"],
    ),
    Case(
        "topics-retrieve-nothing",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["topics.yaml:", "retrieved no passages"],
        # Without a theme (with one the result is the same: a hit needs the theme and a query term).
        topics_file(topics=[{"name": "space", "queries": ["우주선 로켓", "은하수 행성"]}], theme=None),
    ),
    Case(
        "train-missing-base-model",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["ensemble.yaml", "base_model", "nowhere"],
        missing_base,
    ),
    Case(
        "train-no-base-and-no-pretrain",
        "indexed",
        ["train-experts", "topics.yaml"],
        ["ensemble.yaml", "base_model", "pretrain-base"],
        config_update(base_model=None),
    ),
    Case("train-before-build-index", "fresh", ["train-experts", "topics.yaml"], ["build-index"]),
    # ---- compose ----------------------------------------------------------------------------------------
    Case(
        "compose-before-train-experts",
        "indexed",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "train-experts"],
    ),
    Case(
        "outline-expert-not-trained",
        "trained",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "sections[1].expert", "'village'", "train-experts"],
        outline_file(sections=[SECTIONS[0], {**SECTIONS[1], "expert": "village"}]),
    ),
    Case(
        "outline-adapter-for-another-base",
        "trained",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "another base", "--force"],
        other_base,
    ),
    Case(
        "outline-corrupted-adapter-file",
        "trained",
        ["compose", "outline.yaml"],
        ["adapter_model.safetensors", "retrain"],
        corrupt_adapter,
    ),
    Case(
        "outline-corrupted-manifest",
        "trained",
        ["compose", "outline.yaml"],
        ["manifest.json", "corrupt"],
        corrupt_manifest,
    ),
    Case(
        "compose-missing-base-model",
        "trained",
        ["compose", "outline.yaml"],
        ["ensemble.yaml", "base_model", "nowhere"],
        missing_base,
    ),
    Case(
        "outline-negative-target",
        "trained",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "target_chars", "greater than 0"],
        outline_file(defaults={"target_chars": -100}),
    ),
    Case(
        "outline-empty-sections",
        "trained",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "sections", "at least one section"],
        outline_file(raw="title: 함께\nsections: []\n"),
    ),
    Case(
        "outline-unknown-key",
        "trained",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "temprature", "did you mean 'temperature'"],
        outline_file(defaults={"temprature": 0.7}),
    ),
    Case(
        "outline-unclosed-quote",
        "trained",
        ["compose", "outline.yaml"],
        ["outline.yaml:", "malformed YAML"],
        outline_file(raw='title: "함께\nsections:\n  - heading: a\n'),
    ),
    # ---- evaluate ---------------------------------------------------------------------------------------
    Case("evaluate-missing-document", "trained", ["evaluate", "essay.md"], ["essay.md", "not found"]),
    Case(
        "evaluate-document-without-sections",
        "trained",
        ["evaluate", "essay.md"],
        ["essay.md", "no sections"],
        document(b"# only a title\n\nand a paragraph.\n"),
    ),
    Case(
        "evaluate-binary-document",
        "trained",
        ["evaluate", "essay.md"],
        ["essay.md", "UTF-8"],
        document(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"),
    ),
    Case(
        "evaluate-outline-unknown-key",
        "trained",
        ["evaluate", "essay.md", "--outline", "outline.yaml"],
        ["outline.yaml:", "did you mean 'sections'"],
        chain(document(), outline_file(raw="title: 함께\nsectons: []\n")),
    ),
    Case(
        "compose-section-out-of-range",
        "trained",
        ["compose", "outline.yaml", "--sections", "9"],
        ["--sections", "9", "2 section"],
    ),
]


def _prepare(case: Case, pipeline, tmp_path: Path) -> Path:
    if case.stage == "none":
        root = tmp_path / "project"
        root.mkdir()
    else:
        root = pipeline.copy(case.stage, tmp_path / "project")
    if case.setup is not None:
        case.setup(root, pipeline)
    return root


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, pipeline, tmp_path):
    if case.skip:
        pytest.skip(case.skip)
    if case.extra:
        extras.require(case.extra)
    root = _prepare(case, pipeline, tmp_path)
    try:
        before = snapshot(root)
        t0 = time.monotonic()
        r = ensemble(
            *case.args,
            cwd=root,
            env=case.env,
            address_space=case.address_space,
            honour_permissions=case.permissions,
            timeout=300,
        )
        elapsed = time.monotonic() - t0
        after = snapshot(root)
    finally:
        for p in [root, *root.rglob("*")]:  # let pytest clean up what a case locked
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)

    assert r.code == 2, str(r)
    lines = r.err_lines
    if case.debug:
        assert "Traceback" in r.stderr, str(r)
        line = lines[-1]
    else:
        assert "Traceback" not in r.stderr, str(r)
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{r.stderr}"
        line = lines[0]
    assert line.startswith("error: "), line
    shown = line.replace(str(root), "<project>")  # so no expectation is met by the test's own tmp path
    for want in case.expect:
        assert want.lower() in shown.lower(), f"{want!r} not in: {line}"
    assert ACTION.search(shown), f"the error does not say what to do: {line}"
    assert SECRET not in r.stderr and SECRET not in r.stdout
    assert not diff(before, after), f"the failed command changed the project: {diff(before, after)}"
    if case.max_seconds is not None:
        assert elapsed < case.max_seconds, f"took {elapsed:.1f} s"


def test_matrix_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert {
        "build-index",
        "search",
        "analyze",
        "train-experts",
        "compose",
        "init",
        "schema",
        "pretrain-base",
    } <= {_command(c.args) for c in CASES}


def _command(args: list[str]) -> str:
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in ("-c", "--config") else rest[1:]
    return rest[0]


def test_output_file_is_untouched_by_a_failed_compose(pipeline, tmp_path):
    """`--output FILE` with a bad outline: the old FILE survives byte for byte."""
    root = pipeline.copy("trained", tmp_path / "project")
    essay = root / "essay.md"
    essay.write_text("# 예전 글\n", encoding="utf-8")
    outline_file(defaults={"target_chars": 0})(root, pipeline)
    r = ensemble("compose", "outline.yaml", "--output", "essay.md", cwd=root)
    assert r.code == 2 and len(r.err_lines) == 1, str(r)
    assert essay.read_text(encoding="utf-8") == "# 예전 글\n"
    assert not list(root.glob(".essay.md*"))
