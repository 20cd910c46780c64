"""Security: nothing unpickles untrusted files, remote code stays off, weights are safetensors only, secrets
never reach disk or logs, and config paths neither depend on the shell's directory nor escape through
symlinks silently."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from reliability_kit import SECRET, ensemble, is_pickled, ok, snapshot

PACKAGE = Path(__file__).resolve().parents[2] / "ensemble"
PICKLE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
UNSAFE_NAMES = (
    ".pt",
    ".pth",
    ".pkl",
    ".pickle",
    ".ckpt",
    ".joblib",
    "pytorch_model.bin",
    "training_args.bin",
)


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in sorted(PACKAGE.rglob("*.py"))]


def _call_name(node: ast.Call) -> str:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def test_no_pickle_and_torch_load_only_with_weights_only():
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in PICKLE_MODULES for n in names):
                    found.append(f"{_where(path, node)}: imports {names}")
            elif isinstance(node, ast.Call):
                name = _call_name(node)
                if name.endswith("torch.load") or (name == "load" and _imported_from_torch(tree)):
                    kw = {k.arg: k.value for k in node.keywords}
                    safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                    if not safe:
                        found.append(f"{_where(path, node)}: {name}() without weights_only=True")
                if name.endswith(("numpy.load", "np.load")):
                    kw = {k.arg: k.value for k in node.keywords}
                    if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True:
                        found.append(f"{_where(path, node)}: np.load(allow_pickle=True)")
    assert found == []


def _imported_from_torch(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.ImportFrom) and n.module == "torch" and any(a.name == "load" for a in n.names)
        for n in ast.walk(tree)
    )


def test_remote_code_is_off_by_default_and_only_the_config_can_turn_it_on():
    from ensemble.config import ProjectConfig

    assert ProjectConfig().trust_remote_code is False
    problems = []
    loads = 0
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_name(node).endswith("from_pretrained"):
                loads += 1
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if not (isinstance(node.value, ast.Attribute) and node.value.attr == "trust_remote_code"):
                    problems.append(f"{_where(path, node.value)}: trust_remote_code={ast.unparse(node.value)}")
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "trust_remote_code":
                        if not (isinstance(v, ast.Attribute) and v.attr == "trust_remote_code"):
                            problems.append(f"{_where(path, v)}: trust_remote_code: {ast.unparse(v)}")
    assert loads > 0
    assert problems == []


def test_a_full_run_leaves_only_safetensors_weights(pipeline):
    work = pipeline.composed / "work"
    files = [p for p in work.rglob("*") if p.is_file()]
    assert [p.relative_to(work).as_posix() for p in files if p.name.endswith(UNSAFE_NAMES) or is_pickled(p)] == []
    assert not [p for p in work.rglob("checkpoints") if p.is_dir()], "training checkpoints left after training"
    weights = sorted(p.relative_to(work).as_posix() for p in work.rglob("*.safetensors"))
    assert weights == [
        "experts/family/adapter/adapter_model.safetensors",
        "experts/friends/adapter/adapter_model.safetensors",
    ]
    assert not [p for p in pipeline.base.iterdir() if p.name.endswith(UNSAFE_NAMES) or is_pickled(p)]


def test_the_secret_in_the_environment_reaches_no_file_and_no_log(pipeline):
    """Every pipeline command ran with ENSEMBLE_ES_PASSWORD set (and every bad-input case too)."""
    needle = SECRET.encode()
    leaked = [
        p.relative_to(pipeline.root).as_posix()
        for p in pipeline.root.rglob("*")
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]
    assert leaked == []
    assert pipeline.runs and all(SECRET not in r.stderr and SECRET not in r.stdout for r in pipeline.runs)


def test_paths_in_the_config_are_relative_to_the_file_not_the_shell(pipeline, tmp_path):
    # The session pipeline ran build-index and train-experts from the parent directory with -c.
    assert (pipeline.indexed / "work" / "index").is_dir()
    assert not (pipeline.root / "work").exists() and not (pipeline.root / ".ensemble").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = str(pipeline.indexed / "ensemble.yaml")
    here = ok(ensemble("search", "가족 저녁", "--json", cwd=pipeline.indexed))
    there = ok(ensemble("-c", cfg, "search", "가족 저녁", "--json", cwd=elsewhere))
    assert here.stdout == there.stdout and here.stdout.strip()
    assert list(elsewhere.iterdir()) == []


def _link_outside(root: Path, outside: Path) -> Path:
    outside.mkdir(parents=True, exist_ok=True)
    target = outside / "private-notes.txt"
    target.write_text("비밀 일기: 오늘 은행 비밀번호를 바꿨다.\n", encoding="utf-8")
    link = root / "corpus" / "notes.txt"
    link.symlink_to(target)
    return target


def test_a_corpus_symlink_leading_outside_the_project_is_refused(pipeline, tmp_path):
    root = pipeline.copy("fresh", tmp_path / "project")
    target = _link_outside(root, tmp_path / "outside")
    before = snapshot(root)
    r = ensemble("build-index", cwd=root)
    assert r.code == 2, str(r)
    assert len(r.err_lines) == 1, str(r)
    line = r.err_lines[0]
    assert "corpus/notes.txt" in line and str(target) in line and "symlink" in line and "--skip-bad" in line
    assert snapshot(root) == before


def test_skip_bad_skips_the_escaping_symlink_with_a_warning(pipeline, tmp_path):
    root = pipeline.copy("fresh", tmp_path / "project")
    _link_outside(root, tmp_path / "outside")
    r = ok(ensemble("build-index", "--skip-bad", cwd=root))
    assert "corpus/notes.txt" in r.stderr and "skipped" in r.stderr
    hits = ok(ensemble("search", "비밀번호 은행", "--json", cwd=root)).stdout
    assert "notes" not in hits


def test_a_symlink_inside_the_project_and_a_path_listed_explicitly_are_followed(pipeline, tmp_path):
    root = pipeline.copy("fresh", tmp_path / "project")
    shared = root / "shared"
    shared.mkdir()
    (shared / "story.txt").write_text("이웃과 함께 만든 정원 이야기.\n", encoding="utf-8")
    (root / "corpus" / "story.txt").symlink_to(shared / "story.txt")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "listed.txt").write_text("바다에서 함께 본 일출.\n", encoding="utf-8")
    cfg = (root / "ensemble.yaml").read_text(encoding="utf-8")
    (root / "ensemble.yaml").write_text(cfg.replace("- corpus/", f"- corpus/\n- {outside / 'listed.txt'}"))
    ok(ensemble("build-index", cwd=root))
    hits = ok(ensemble("search", "정원 일출", "--json", cwd=root)).stdout.splitlines()
    assert {"story", "listed"} <= {json.loads(h)["doc_id"] for h in hits}
