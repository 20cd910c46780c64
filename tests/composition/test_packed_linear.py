"""Pre-packed matmuls (the host's default on a CPU in float32): same numbers as a plain linear layer, the same
bits for a row whatever the rows beside it, and the same texts as a host without them."""

from __future__ import annotations

import os

import pytest
import torch
from test_host import GREEDY, PROMPTS, SAMPLED, load, make_host

import ensemble.composition.packed_linear as packed_module
from ensemble.composition.host import ExpertHost
from ensemble.composition.packed_linear import (
    PackedHead,
    PackedLinear,
    file_mappings,
    forget_file_pages,
    pack_linears,
    packing_available,
)
from ensemble.composition.types import Request

pytestmark = pytest.mark.skipif(
    not packing_available(torch.device("cpu"), torch.float32), reason="this torch has no oneDNN"
)


def test_a_packed_layer_computes_the_linear_layer_and_each_row_alone_is_the_same_bits():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200)
    packed = PackedLinear(linear)
    assert packed.weight is linear.weight and packed.bias is linear.bias
    x = torch.randn(2, 9, 96)
    with torch.no_grad():
        batch = packed(x)
        assert batch.shape == (2, 9, 200)
        torch.testing.assert_close(batch, linear(x), atol=1e-5, rtol=1e-5)
        alone = torch.cat([packed(x[r : r + 1, p : p + 1]) for r in range(2) for p in range(9)]).reshape(2, 9, 200)
    assert torch.equal(alone, batch)
    with torch.no_grad():
        linear.weight.mul_(2)
    packed.refresh()
    with torch.no_grad():
        torch.testing.assert_close(packed(x), linear(x), atol=1e-5, rtol=1e-5)


def test_a_side_computed_in_the_same_product_leaves_the_layers_own_outputs_the_same_bits():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200)
    side = torch.randn(24, 96)
    plain, fused = PackedLinear(linear), PackedLinear(linear, side)
    x = torch.randn(5, 1, 96)
    with torch.no_grad():
        assert torch.equal(fused(x), plain(x))
        torch.testing.assert_close(fused.side_output, x @ side.t(), atol=1e-5, rtol=1e-5)
        linear.weight.mul_(2)  # a freeze expert writes into the weight: packed again, side and all
        linear.bias.add_(1)
        plain.refresh()
        fused.refresh()
        assert torch.equal(fused(x), plain(x))
        torch.testing.assert_close(fused.side_output, x @ side.t(), atol=1e-5, rtol=1e-5)


def test_a_hosts_lora_layers_compute_their_adapters_first_product_with_the_base_layers(tiny_base, expert_store):
    host = make_host(tiny_base, expert_store)
    lora = [m for n, m in host.model.named_modules() if n.endswith(".lora_A")]
    bases = [m for m in host.model.modules() if isinstance(m, PackedLinear) and m.side is not None]
    assert lora and len(bases) == len(lora)


def test_a_packed_output_layer_in_slices_scores_every_id_and_each_row_alone_the_same(monkeypatch):
    monkeypatch.setattr(packed_module, "HEAD_SLICE", 64)
    torch.manual_seed(1)
    head = torch.nn.Linear(32, 150)  # three slices: 64, 64, 22 outputs
    packed = PackedHead(head)
    assert packed.weight is head.weight and len(packed.slices) == 3
    x = torch.randn(7, 32)
    with torch.no_grad():
        batch = packed(x)
        torch.testing.assert_close(batch, head(x), atol=1e-5, rtol=1e-5)
        assert all(torch.equal(packed(x[r : r + 1]), batch[r : r + 1]) for r in range(7))
        head.bias.add_(1)
    packed.refresh()
    with torch.no_grad():
        torch.testing.assert_close(packed(x), head(x), atol=1e-5, rtol=1e-5)


def test_packing_leaves_embeddings_output_layer_and_adapters_plain(tiny_base, expert_store):
    model, tok = load(tiny_base)
    host = ExpertHost(model, tok, lora={"family": expert_store / "experts" / "family" / "adapter"}, packed=False)
    layers = pack_linears(host.model)
    assert layers
    names = {n for n, m in host.model.named_modules() if isinstance(m, PackedLinear)}
    assert not any(".lora_" in n for n in names)
    assert not isinstance(host.model.get_output_embeddings(), PackedLinear)


def test_the_packed_copy_replaces_the_weight_except_where_a_freeze_expert_writes(tiny_base, expert_store):
    host = make_host(tiny_base, expert_store)
    layers = [m for m in host.model.modules() if isinstance(m, PackedLinear)]
    kept = [m for m in layers if m.weight.numel()]
    assert kept and len(kept) < len(layers)
    written = {id(host._params[n]) for n in host._originals}  # what the freeze expert swaps in and out
    assert {id(m.weight) for m in kept} == {id(m.weight) for m in layers} & written
    assert all(m.weight.dtype == torch.float32 for m in layers)
    with pytest.raises(RuntimeError, match="released"):
        next(m for m in layers if not m.weight.numel()).refresh()


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_packed_host_writes_what_a_plain_host_writes(tiny_base, expert_store, sampling):
    packed, plain = make_host(tiny_base, expert_store), make_host(tiny_base, expert_store, packed=False)
    assert packed.packed and not plain.packed
    assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    # a freeze expert between base rows: its swapped-in weights must be packed again, and the base's after it
    experts = ["family", "nature", "base", "friends", "nature", "base"]
    reqs = [Request(p, e, sampling, 7 + i) for i, (p, e) in enumerate((p, e) for p in PROMPTS for e in experts)]
    for _ in range(2):
        a, b = packed.generate(reqs), plain.generate(reqs)
        assert [g.text for g in a] == [g.text for g in b]
        for x, y in zip(a, b, strict=True):
            assert x.mean_logprob == pytest.approx(y.mean_logprob, abs=1e-4)


def _rss_file_kib() -> int:
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux only")
def test_a_released_weight_mapped_from_a_file_leaves_memory_and_other_tensors_keep_their_values(tmp_path):
    path = tmp_path / "weights.bin"
    values = torch.randn(64 * 2**20 // 4)  # 64 MiB
    values.numpy().tofile(path)
    mapped = torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.float32)
    plain = values.clone()
    assert float(mapped.sum()) == pytest.approx(float(values.sum()), rel=1e-3)  # every page read in
    before = _rss_file_kib()
    maps = file_mappings()
    forget_file_pages(mapped, maps)
    assert before - _rss_file_kib() > 32 * 1024
    assert torch.equal(mapped, values)  # read again from the file, unchanged
    forget_file_pages(plain, maps)  # not mapped from a file: left alone
    assert torch.equal(plain, values)


def test_a_row_reads_the_same_hidden_state_bits_alone_as_beside_other_experts_rows(tiny_base, expert_store):
    """The hidden state a row's output layer reads, batched with other experts' rows vs alone: with the LoRA
    products packed like the base's layers, the same bits (so an int8 output layer, which rounds coarsely,
    cannot tip a row apart)."""
    host = make_host(tiny_base, expert_store, int8_head=False)
    seen: list[torch.Tensor] = []
    host.output_layer().register_forward_pre_hook(lambda m, a: seen.append(a[0][:, -1].clone()))
    reqs = [Request(PROMPTS[0], e, GREEDY, 0) for e in ("family", "friends", "base")]
    host.generate(reqs)
    batched = list(seen)
    equal = []
    for row, req in enumerate(reqs):
        seen.clear()
        host.generate([req])
        equal.append(all(torch.equal(b[row], a[0]) for b, a in zip(batched, seen, strict=False)))
    assert all(equal)
