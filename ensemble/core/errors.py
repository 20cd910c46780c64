"""The one family of user-facing errors. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path


class EnsembleError(Exception):
    """A problem the user can fix: bad input, missing artifact, unreachable server."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "") + ": "
        if self.key:
            where += f"{self.key}: "
        return where + self.message


class ConfigError(EnsembleError):
    """A configuration file is malformed or holds an invalid value."""


class CorpusError(EnsembleError):
    """A corpus file cannot be read or holds no usable text."""


class BackendError(EnsembleError):
    """The retrieval backend is missing, unreachable or incompatible."""


class ArtifactError(EnsembleError):
    """An artifact (index, base model, adapter) is missing, corrupt or made for something else."""


class DeviceError(EnsembleError):
    """The machine cannot run what was asked as asked: several GPUs and no launcher, a precision it lacks."""


class NumericsError(EnsembleError):
    """A computation produced NaN or infinity: the number format overflowed (fp16, most often)."""
