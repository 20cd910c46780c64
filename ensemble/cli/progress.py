"""Rich progress bars and log lines on stderr; stdout stays for the product."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.progress import NullProgress


class RichProgress:
    """Live bars on a terminal; where stderr is a file or a pipe (logs, CI) only the log and summary lines,
    since a bar drawn there is one final, empty render."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self._live = self.console.is_terminal
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

    def start(self, task: str, total: int | None = None) -> None:
        if not self._live:
            return
        if not self._tasks:
            self._bars.start()
        self._tasks[task] = self._bars.add_task(task, total=total, info="")

    def advance(self, task: str, n: int = 1, info: str | None = None) -> None:
        tid = self._tasks.get(task)
        if tid is None:
            return
        self._bars.update(tid, advance=n, **({"info": info} if info is not None else {}))

    def end(self, task: str, summary: str | None = None) -> None:
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
