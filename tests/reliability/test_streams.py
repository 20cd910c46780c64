"""What the pipeline's commands print besides the product: their own progress and log lines, not the
warnings of the libraries they drive (a user reads stderr; library drift shows up here first)."""

from __future__ import annotations

import re

# warnings, deprecations, DeepSpeed's log lines, and the libraries' own tqdm bars ("… 28/28 [00:00, 9.1it/s]")
LIBRARY_NOISE = re.compile(r"warning|deprecat|will be removed|\[INFO\]|it/s\]", re.IGNORECASE)


def test_pipeline_stderr_carries_only_its_own_lines(pipeline):
    noisy = [f"{' '.join(r.args)}: {line}" for r in pipeline.runs for line in r.err_lines if LIBRARY_NOISE.search(line)]
    assert noisy == []
    # Written to a file or a pipe, stderr holds lines, not the empty final frames of progress bars.
    blank = [" ".join(r.args) for r in pipeline.runs if any(not line.strip() for line in r.stderr.splitlines())]
    assert blank == []
    commands = {"build-index", "train-experts", "compose"}
    assert {a for r in pipeline.runs for a in r.args if a in commands} == commands
