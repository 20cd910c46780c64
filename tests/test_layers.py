"""The package reads as the pipeline: a stage never imports a stage after it (or the CLI)."""

import ast
from pathlib import Path

import ensemble

PKG = Path(ensemble.__file__).parent
# Left imports right, never the reverse.
LAYERS = [
    "cli",
    "examples",
    "evaluation",
    "composition",
    "training",
    "planning",
    "retrieval",
    "corpus",
    "text",
    "config",
    "core",
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(PKG).parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-1])[: len(rel) - node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{'.'.join(base)}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            out |= {n.removeprefix("ensemble.") for n in names if n}
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("ensemble.") for a in node.names if a.name.startswith("ensemble")}
    return out


def test_no_stage_imports_a_later_stage():
    bad = []
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).parts
        if len(parts) < 2 or parts[0] not in LAYERS:
            continue
        here = LAYERS.index(parts[0])
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top in LAYERS and LAYERS.index(top) < here:
                bad.append(f"{path.relative_to(PKG)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_import_ensemble_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, ensemble, ensemble.cli; print('torch' in sys.modules, 'kss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
