"""The runnable example project written by `ensemble init`."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from ..core.errors import EnsembleError

EXAMPLE = "hamkke"


def init_project(dest: str | Path, *, force: bool = False) -> Path:
    """Copy the example project into `dest`; a non-empty `dest` is refused unless `force`."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise EnsembleError("exists and is not a directory; choose another path", path=dest)
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise EnsembleError("directory is not empty; choose an empty one or pass --force to overwrite", path=dest)
    src = resources.files(__package__) / EXAMPLE
    with resources.as_file(src) as src_path:
        dest.mkdir(parents=True, exist_ok=True)
        for item in Path(src_path).rglob("*"):
            if item.is_dir() or "__pycache__" in item.parts:
                continue
            target = dest / item.relative_to(src_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, target)
    return dest
