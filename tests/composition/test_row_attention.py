"""The host's attention on a CPU: a section's prompt read once for all its candidates, each row computed alike
whatever rows share its batch, and a model whose attention would not read the shared prompt stopped."""

from __future__ import annotations

import pytest
import torch
from test_host import SAMPLED, make_host

from ensemble.composition.row_attention import SLOTS, SharedPrompt
from ensemble.composition.types import Request


def states(prompts: int, heads: int = 2, positions: int = 16, dim: int = 8):
    g = torch.Generator().manual_seed(prompts)
    return (torch.randn(prompts, heads, positions, dim, generator=g) for _ in range(2))


@pytest.mark.parametrize(
    "owner",
    [[0, 0, 0, 1, 1, 1], [1, 0, 1], [0, 0, 0, 0, 0, 0, 1], [2, 2]],
    ids=["candidates", "interleaved", "more-than-slots", "a-prompt-without-rows"],
)
def test_each_row_reads_its_own_prompt_and_equals_itself_alone(owner):
    keys, values = states(3)
    rows = len(owner)
    q = torch.randn(rows, 2, 3, 8)
    probs = torch.softmax(torch.randn(rows, 2, 3, 16), -1)
    shared = SharedPrompt(keys, values, owner)
    scores, weighted = shared.scores(q), shared.weighted(probs)
    index = torch.tensor(owner)
    assert torch.allclose(scores, q @ keys[index].transpose(-1, -2), atol=1e-5)
    assert torch.allclose(weighted, probs @ values[index], atol=1e-5)
    for r, o in enumerate(owner):
        alone = SharedPrompt(keys[o : o + 1], values[o : o + 1], [0])
        assert torch.equal(alone.scores(q[r : r + 1]), scores[r : r + 1])
        assert torch.equal(alone.weighted(probs[r : r + 1]), weighted[r : r + 1])
    matrices = sum(-(-owner.count(o) // SLOTS) for o in set(owner))  # a prompt's rows fill SLOTS per matrix
    assert shared.keys.shape[0] == matrices


def test_many_candidates_of_one_prompt_equal_each_candidate_alone(host):
    """Six candidates of one prompt take two of its matrices (SLOTS rows each), a seventh row another prompt."""
    reqs = [Request("우리 가족은 저녁마다 식탁에 모인다.", "family", SAMPLED, c) for c in range(6)]
    reqs.append(Request("봄이 오면", "friends", SAMPLED, 9))
    batched = host.generate(reqs)
    alone = [host.generate([r])[0] for r in reqs]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.token_logprobs for g in batched] == [g.token_logprobs for g in alone]
    assert len({g.text for g in batched[:6]}) >= 3


def test_attention_that_skips_the_shared_prompt_is_an_error(tiny_base, expert_store):
    """Should a model's attention not go through transformers' attention interface, its rows would attend without
    their prompt: the cache notices at the next step that the prompt was never read."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    def own_positions_only(module, query, key, value, mask, row_cache=None, **kwargs):
        mask = None if mask is None else mask[..., -key.shape[2] :]
        return sdpa_attention_forward(module, query, key, value, mask, **kwargs)

    AttentionInterface.register("test_own_positions_only", own_positions_only)
    AttentionMaskInterface.register("test_own_positions_only", sdpa_mask)
    host = make_host(tiny_base, expert_store)
    assert host.row_attention
    host.model.get_base_model().set_attn_implementation("test_own_positions_only")
    with pytest.raises(RuntimeError, match="attention interface"):
        host.generate([Request("봄이 오면", "family", SAMPLED, 0)])


@pytest.fixture(scope="module")
def host(tiny_base, expert_store):
    return make_host(tiny_base, expert_store)
