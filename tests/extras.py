"""Optional extras (`pip install -e ".[es]"`, `".[deepspeed]"`): tests that need one skip, with the reason, when it
is absent. `ENSEMBLE_TEST_HIDE_EXTRAS=elasticsearch,deepspeed` makes installed ones look absent, to check that
`python -m pytest` passes in a venv with only the `dev` extra."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

EXTRAS = {"elasticsearch": "es", "deepspeed": "deepspeed"}  # module → extra that installs it
HIDE_VAR = "ENSEMBLE_TEST_HIDE_EXTRAS"


def reason(module: str) -> str:
    return f"needs the {EXTRAS[module]} extra: pip install -e '.[{EXTRAS[module]}]'"


def hidden(env: dict[str, str] | None = None) -> list[str]:
    value = (os.environ if env is None else env).get(HIDE_VAR, "")
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(EXTRAS))
    if unknown:
        raise ValueError(f"{HIDE_VAR}: {', '.join(unknown)} is not an optional extra ({', '.join(EXTRAS)})")
    return names


def hide(names: list[str]) -> None:
    """Make `import name` fail as if the package were not installed (None in sys.modules)."""
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]


def absent(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return True
    return False


def require(module: str) -> None:
    """Skip the running test unless `module` (an optional extra) can be imported."""
    if absent(module):
        pytest.skip(reason(module))


def missing_extra(error: BaseException) -> str | None:
    """The optional extra whose absence raised `error`, if that is what happened."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    root = error.name.split(".")[0]
    return root if root in EXTRAS and absent(root) else None
