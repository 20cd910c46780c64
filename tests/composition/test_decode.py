"""The token loop alone, on scripted scores: what it feeds the model, who leaves the batch and when."""

from __future__ import annotations

import torch

from ensemble.composition.decode import decode

EOS = 0


def test_rows_leave_the_batch_as_they_end_and_the_rest_are_fed_their_own_ids():
    # Row r writes script[r]; EOS ends rows 1 and 2 early, row 0 runs to max_new.
    script = [[5, 6, 7, 8], [9, EOS], [3, 4, EOS]]
    input_ids = torch.tensor([[1, 2, 3], [0, 2, 4], [0, 0, 5]])  # left-padded
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    fed, masks, lives, left = [], [], [], []
    step = {"n": 0}

    def forward(ids, m, live):
        fed.append(ids[:, 0].tolist())
        masks.append(m.tolist())
        lives.append(list(live))
        return torch.zeros(len(live), 10)

    def choose(ids, scores, live):
        assert ids.shape[0] == scores.shape[0] == len(live)
        n = step["n"]
        step["n"] += 1
        return [script[r][n] for r in live]

    out = decode(forward, choose, lambda kept: left.append(kept.tolist()), input_ids, mask, 4, EOS)

    assert out == script
    assert lives == [[0, 1, 2], [0, 1, 2], [0, 2], [0]]
    assert left == [[0, 2], [0]]  # positions in the batch of the moment
    assert fed == [[3, 4, 5], [5, 9, 3], [6, 4], [7]]  # the last prompt id, then each row's own choice
    assert masks[2] == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]] and masks[3] == [[1, 1, 1, 1, 1, 1]]


def test_the_loop_stops_at_max_new_or_when_every_row_has_ended():
    calls = []

    def forward(ids, m, live):
        calls.append(len(live))
        return torch.zeros(len(live), 4)

    ids, mask = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.long)
    assert decode(forward, lambda i, s, live: [7] * len(live), lambda kept: None, ids, mask, 3, EOS) == [[7, 7, 7]]
    assert len(calls) == 3
    calls.clear()
    assert decode(forward, lambda i, s, live: [EOS] * len(live), lambda k: None, ids, mask, 3, EOS) == [[EOS]]
    assert len(calls) == 1
    calls.clear()
    assert decode(forward, lambda i, s, live: [EOS] * len(live), lambda k: None, ids, mask, 3, None) == [[EOS] * 3]
