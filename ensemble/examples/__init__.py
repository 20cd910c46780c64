"""The runnable example project written by `ensemble init`."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from ..core.artifacts import write_text_atomic
from ..core.errors import EnsembleError

EXAMPLE = "hamkke"


def init_project(dest: str | Path, *, force: bool = False, base_model: str | None = None) -> Path:
    """Copy the example project into `dest`; a non-empty `dest` is refused unless `force`. With `base_model`
    (a hub id or a directory) the project uses that base, with training settings that suit a pretrained model."""
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
    if base_model:
        local = Path(base_model).expanduser()
        # ensemble.yaml's paths are relative to the file, not to the shell that named the directory
        _use_pretrained(dest, str(local.resolve()) if local.is_dir() else base_model)
    return dest


def _use_pretrained(dest: Path, base_model: str) -> None:
    from ..config import load_project
    from .pretrained import pretrained_settings, rewrite_defaults, set_base_model

    config = dest / "ensemble.yaml"
    settings = pretrained_settings(load_project(config), base_model)
    topics = dest / "topics.yaml"
    write_text_atomic(topics, rewrite_defaults(topics.read_text(encoding="utf-8"), settings))
    write_text_atomic(config, set_base_model(config.read_text(encoding="utf-8"), base_model))
