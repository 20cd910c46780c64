"""Progress reporting as a protocol: the library calls it, the CLI renders it on stderr."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int | None = None) -> None: ...

    def advance(self, task: str, n: int = 1, info: str | None = None) -> None: ...

    def end(self, task: str, summary: str | None = None) -> None: ...

    def log(self, message: str) -> None: ...


class NullProgress:
    """Reports nothing; the default for library calls."""

    def start(self, task: str, total: int | None = None) -> None:
        pass

    def advance(self, task: str, n: int = 1, info: str | None = None) -> None:
        pass

    def end(self, task: str, summary: str | None = None) -> None:
        pass

    def log(self, message: str) -> None:
        pass
