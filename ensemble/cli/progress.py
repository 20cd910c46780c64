"""Rich progress bars and log lines on stderr; stdout stays for the product."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.progress import NullProgress

LINE_EVERY = 30.0  # seconds between progress lines where there are no live bars


@dataclass
class _Task:
    total: int | None
    started: float
    last_line: float
    done: int = 0
    info: str = ""


def clock_text(seconds: float) -> str:
    """`1:02:03`, `2:03`: hours only when there are any."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(task: str, done: int, total: int | None, elapsed: float, info: str = "") -> str:
    """`training: step 40/200 (20%), 1:00 elapsed, about 4:00 left, loss 3.2`."""
    parts = [f"{task}: {done}/{total} ({100 * done // max(total, 1)}%)" if total else f"{task}: {done}"]
    parts.append(f"{clock_text(elapsed)} elapsed")
    if total and done:
        parts.append(f"about {clock_text(elapsed * (total - done) / done)} left")
    if info:
        parts.append(info)
    return ", ".join(parts)


def summary_line(task: str, done: int, total: int | None, elapsed: float) -> str:
    count = f"{done}/{total}" if total else f"{done}"
    return f"{task}: {count} done in {clock_text(elapsed)}"


class RichProgress:
    """Live bars on a terminal. Where stderr is a file or a pipe (logs, CI) a bar would be one final, empty
    render, so long tasks print a progress line at most every `every` seconds (step/total, elapsed, estimated
    time left) and a summary when they end, besides the log lines."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = LINE_EVERY,
    ) -> None:
        self.console = console or Console(stderr=True)
        self._live = self.console.is_terminal
        self._clock = clock
        self._every = every
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._plain: dict[str, _Task] = {}

    def start(self, task: str, total: int | None = None) -> None:
        if not self._live:
            now = self._clock()
            self._plain[task] = _Task(total, now, now)
            return
        if not self._tasks:
            self._bars.start()
        self._tasks[task] = self._bars.add_task(task, total=total, info="")

    def advance(self, task: str, n: int = 1, info: str | None = None) -> None:
        plain = self._plain.get(task)
        if plain is not None:
            self._advance_plain(task, plain, n, info)
            return
        tid = self._tasks.get(task)
        if tid is None:
            return
        self._bars.update(tid, advance=n, **({"info": info} if info is not None else {}))

    def _advance_plain(self, task: str, t: _Task, n: int, info: str | None) -> None:
        t.done += n
        if info is not None:
            t.info = info
        now = self._clock()
        if now - t.last_line >= self._every:
            t.last_line = now
            self.log(progress_line(task, t.done, t.total, now - t.started, t.info))

    def end(self, task: str, summary: str | None = None) -> None:
        plain = self._plain.pop(task, None)
        if plain is not None and self._clock() - plain.started >= self._every:
            self.log(summary_line(task, plain.done, plain.total, self._clock() - plain.started))
        tid = self._tasks.pop(task, None)
        if tid is not None:
            self._bars.remove_task(tid)
        if self._live and not self._tasks:
            self._bars.stop()
        if summary:
            self.console.print(summary, markup=False, highlight=False)

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)  # one message, one line


def make_progress(quiet: bool):
    return NullProgress() if quiet else RichProgress()
