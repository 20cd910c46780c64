"""A lock file holding the owner's pid, so two runs on one work_dir never interleave their writes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import EnsembleError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def work_lock(path: str | Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `path` exclusively; a stale lock (dead pid) is taken over, a live one waits `wait_s` then refuses."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and not _alive(holder):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise EnsembleError(
                f"another ensemble run (pid {holder}) is using this work_dir; wait for it to finish "
                "or delete the lock file if that process is gone",
                path=path,
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
