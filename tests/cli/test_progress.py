"""Progress on a stderr that is not a terminal: a line at most every 30 s with step/total, elapsed time and time
left, and a summary when a long task ends."""

from __future__ import annotations

import io

from rich.console import Console

from ensemble.cli.progress import RichProgress, clock_text, progress_line


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_progress() -> tuple[RichProgress, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, force_terminal=False, width=200)
    return RichProgress(console, clock=clock), out, clock


def test_a_file_gets_a_line_every_30_seconds_and_a_summary():
    p, out, clock = plain_progress()
    p.start("pretrain-base", total=200)
    for _ in range(200):  # one step every second
        clock.now += 1
        p.advance("pretrain-base", 1, info="loss 3.2")
    p.end("pretrain-base", "base model: 1,000 parameters")
    lines = out.getvalue().splitlines()
    assert lines[0] == "pretrain-base: 30/200 (15%), 0:30 elapsed, about 2:50 left, loss 3.2"
    assert lines[1] == "pretrain-base: 60/200 (30%), 1:00 elapsed, about 2:20 left, loss 3.2"
    assert len(lines) == 200 // 30 + 2  # six progress lines, the task's summary, the caller's
    assert lines[-2] == "pretrain-base: 200/200 done in 3:20"
    assert lines[-1] == "base model: 1,000 parameters"


def test_a_short_task_prints_only_what_the_caller_says():
    p, out, clock = plain_progress()
    p.start("indexing", total=10)
    for _ in range(10):
        clock.now += 0.5
        p.advance("indexing")
    p.end("indexing", None)
    p.log("indexed 10 documents")
    assert out.getvalue().splitlines() == ["indexed 10 documents"]


def test_slow_steps_print_at_most_one_line_each():
    p, out, clock = plain_progress()
    p.start("training", total=None)
    clock.now += 95
    p.advance("training")
    clock.now += 10
    p.advance("training")
    assert out.getvalue().splitlines() == ["training: 1, 1:35 elapsed"]


def test_clock_text_and_line_format():
    assert clock_text(59.6) == "1:00" and clock_text(3725) == "1:02:05"
    assert progress_line("indexing", 0, 8000, 31) == "indexing: 0/8000 (0%), 0:31 elapsed"
