"""The int8 output layer (the host's default on a CPU in float32): close to float32 even where a few channels
of the hidden state are far larger than the rest, the same bits for a row whatever the rows beside it, and a
host with it writes what a host with a float32 output layer writes."""

from __future__ import annotations

import pytest
import torch
from test_host import GREEDY, PROMPTS, load, make_host

import ensemble.composition.host as host_module
from ensemble.composition.host import ExpertHost
from ensemble.composition.int8_head import Int8Head, Int8Rows, block_size, int8_available, rotation
from ensemble.composition.packed_linear import PackedHead
from ensemble.composition.subset_head import SubsetHead
from ensemble.composition.types import Request

pytestmark = pytest.mark.skipif(
    not int8_available(torch.device("cpu"), torch.float32), reason="this torch has no fbgemm int8 kernels"
)


def hidden_with_outliers(rows: int, features: int, seed: int = 0) -> torch.Tensor:
    """Hidden states like a real base's: a few channels 40-60x the others."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g)
    x[:, 3] *= 60
    x[:, 17] *= -40
    return x


def test_rotation_is_orthonormal_and_blocks_divide_the_hidden_size():
    for size in (1, 2, 64, 128):
        r = rotation(size)
        torch.testing.assert_close(r @ r.T, torch.eye(size), atol=1e-6, rtol=0)
    assert [block_size(n) for n in (640, 576, 768, 96, 100, 7)] == [128, 64, 128, 32, 4, 1]


def test_int8_scores_stay_close_to_float32_where_a_few_channels_dominate():
    torch.manual_seed(0)
    head = torch.nn.Linear(256, 3000, bias=True)
    x = hidden_with_outliers(12, 256)
    with torch.no_grad():
        exact = head(x)
        got = Int8Head(head)(x)
        plain = Int8Rows(head.weight, max_block=1)(x, head.bias)  # no rotation
    error = ((got - exact).norm() / exact.norm()).item()
    assert error < 0.02
    assert error < 0.5 * ((plain - exact).norm() / exact.norm()).item()


def test_each_row_alone_is_the_same_bits_as_in_any_batch():
    torch.manual_seed(1)
    head = torch.nn.Linear(192, 700, bias=False)
    layer = Int8Head(head)
    x = hidden_with_outliers(2 * 9, 192, seed=2).reshape(2, 9, 192)
    with torch.no_grad():
        batch = layer(x)
        assert batch.shape == (2, 9, 700)
        alone = torch.cat([layer(x[r : r + 1, p : p + 1]) for r in range(2) for p in range(9)]).reshape(batch.shape)
        assert torch.equal(alone, batch)
        for rows in (1, 3, 5, 17):
            assert torch.equal(layer(x.reshape(18, 192)[:rows]), batch.reshape(18, 700)[:rows])


def test_the_int8_copy_follows_the_weight_after_refresh_and_keeps_tied_parameters():
    torch.manual_seed(2)
    head = torch.nn.Linear(64, 300, bias=False)
    layer = Int8Head(head)
    assert layer.weight is head.weight
    x = torch.randn(4, 64)
    with torch.no_grad():
        head.weight.mul_(-3)
        stale = layer(x)
        layer.refresh()
        fresh = layer(x)
        exact = head(x)
    assert ((fresh - exact).norm() / exact.norm()).item() < 0.02
    assert ((stale - exact).norm() / exact.norm()).item() > 1


def test_a_subset_head_in_int8_scores_its_ids_in_order():
    torch.manual_seed(3)
    head = torch.nn.Linear(128, 500)
    index = torch.tensor([4, 9, 250, 499])
    x = hidden_with_outliers(5, 128, seed=4)
    with torch.no_grad():
        got = SubsetHead(head, index, int8=True)(x)
        exact = head(x)[:, index]
    assert got.shape == (5, 4)
    torch.testing.assert_close(got, exact, atol=0.05 * exact.abs().max().item(), rtol=0)
    assert isinstance(SubsetHead(head, index, int8=True).rows, Int8Rows)


def test_the_host_uses_an_int8_output_layer_where_it_is_wide_or_asked_for_and_never_when_refused(
    tiny_base, expert_store, monkeypatch
):
    _, tok = load(tiny_base)
    request = Request(PROMPTS[0], "family", GREEDY, 0)

    def output_layer(**options):
        host = make_host(tiny_base, expert_store, **options)
        host.generate([request])
        return host.model.get_output_embeddings()

    assert isinstance(output_layer(), PackedHead)  # this test model's vocabulary is small: float32, packed
    assert isinstance(output_layer(int8_head=True), Int8Head)
    monkeypatch.setattr(host_module, "INT8_MIN_OUTPUTS", len(tok))
    assert isinstance(output_layer(), Int8Head)
    assert isinstance(output_layer(int8_head=False), PackedHead)
    model, _ = load(tiny_base)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, and stays so
    host = ExpertHost(model, tok, int8_head=True)
    host.generate([Request(PROMPTS[0], "base", GREEDY, 0)])
    assert host.model.get_output_embeddings().weight is host.model.get_input_embeddings().weight


def test_a_vocabulary_restricted_before_generating_builds_only_its_own_int8_rows(tiny_base, expert_store, monkeypatch):
    built = []
    monkeypatch.setattr(Int8Rows, "__init__", _recording(Int8Rows.__init__, built))
    host = make_host(tiny_base, expert_store, int8_head=True)
    _, tok = load(tiny_base)
    host.restrict_vocabulary(range(0, len(tok), 4))
    host.generate([Request(PROMPTS[0], "family", GREEDY, 0)])
    head = host.model.get_output_embeddings()
    assert isinstance(head, SubsetHead) and head.int8
    assert built == [len(head.index)]  # the subset's rows only, never the whole layer
    monkeypatch.setattr(host_module, "INT8_MIN_OUTPUTS", len(tok))
    default = make_host(tiny_base, expert_store)
    default.restrict_vocabulary(range(0, len(tok), 4))
    assert not default.model.get_output_embeddings().int8  # narrowed below the width, it stays float32


def _recording(init, built):
    def wrapped(self, weight, *args, **kwargs):
        built.append(weight.shape[0])
        init(self, weight, *args, **kwargs)

    return wrapped


def test_an_int8_host_writes_what_a_float32_output_layer_writes(tiny_base, expert_store):
    int8, full = make_host(tiny_base, expert_store, int8_head=True), make_host(tiny_base, expert_store, int8_head=False)
    # a freeze expert between base rows: the output layer's int8 copy is renewed after each swap
    experts = ["family", "nature", "base", "friends", "nature", "base"]
    reqs = [Request(p, e, GREEDY, 7 + i) for i, (p, e) in enumerate((p, e) for p in PROMPTS for e in experts)]
    a, b = int8.generate(reqs), full.generate(reqs)
    assert [g.text for g in a] == [g.text for g in b]
    for x, y in zip(a, b, strict=True):
        assert x.mean_logprob == pytest.approx(y.mean_logprob, abs=0.02)
