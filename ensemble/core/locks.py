"""A lock file holding the owner's pid, so two runs on one work_dir never interleave their writes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import EnsembleError


def held_by_other_process(lock: str | Path) -> bool:
    """Whether the lock file names a live process other than this one."""
    try:
        pid = int(Path(lock).read_text().strip() or "0")
    except (OSError, ValueError):
        return False
    return pid > 0 and pid != os.getpid() and _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unusable(directory: Path, e: OSError) -> EnsembleError:
    why = (
        "it exists and is not a directory"
        if isinstance(e, FileExistsError | NotADirectoryError)
        else (e.strerror or str(e))
    )
    return EnsembleError(
        f"cannot write here ({why}); point work_dir in ensemble.yaml at a writable directory", path=directory
    )


def _make_dirs(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; the ones created, deepest first."""
    created = []
    d = directory
    while not d.exists() and not d.is_symlink() and d != d.parent:
        created.append(d)
        d = d.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unusable(directory, e) from None
    return created


@contextlib.contextmanager
def work_lock(path: str | Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `path` exclusively; a stale lock (dead pid) is taken over, a live one waits `wait_s` then refuses.

    Directories created only to hold the lock are removed again if the run leaves them empty, so a command
    that fails early leaves no trace in the project."""
    path = Path(path)
    created = _make_dirs(path.parent)
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
            who = f"pid {holder}" if holder else "a process that is starting"
            raise EnsembleError(
                f"another ensemble run ({who}) is using this work_dir; wait for it to finish "
                "or delete the lock file if that process is gone",
                path=path,
            ) from None
        except FileNotFoundError:  # another run removed the directory it had created: make it again
            created += [d for d in _make_dirs(path.parent) if d not in created]
            continue
        except OSError as e:
            raise _unusable(path.parent, e) from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        for d in created:
            try:
                d.rmdir()  # only succeeds while empty
            except OSError:
                break
