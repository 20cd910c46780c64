"""The expert host on a real tiny base: one batch with mixed experts gives what each expert gives alone."""

from __future__ import annotations

import pytest

from ensemble.composition.host import ExpertHost, exempt_token, padded_width
from ensemble.composition.types import Request, Sampling

PROMPTS = ["우리 가족은 저녁마다 식탁에 모인다.", "친구와 나는 학교 운동장에서 만났다.", "봄이 오면"]
GREEDY = Sampling(
    max_new_tokens=16,
    temperature=0,
    top_k=30,
    top_p=0.95,
    repetition_penalty=1.0,
    penalty_exempt_particles=True,
    no_repeat_ngram_size=0,
)
SAMPLED = Sampling(
    max_new_tokens=16,
    temperature=1.0,
    top_k=30,
    top_p=0.95,
    repetition_penalty=1.15,
    penalty_exempt_particles=True,
    no_repeat_ngram_size=4,
)


def load(base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)


def make_host(tiny_base, expert_store, **options):
    model, tok = load(tiny_base)
    experts = expert_store / "experts"
    return ExpertHost(
        model,
        tok,
        lora={"family": experts / "family" / "adapter", "friends": experts / "friends" / "adapter"},
        freeze={"nature": experts / "nature" / "adapter" / "trained.safetensors"},
        **options,
    )


@pytest.fixture(scope="module")
def host(tiny_base, expert_store):
    return make_host(tiny_base, expert_store)


@pytest.fixture(scope="module")
def peft_path_host(tiny_base, expert_store):
    """A host on PEFT's own mixed-adapter path (`adapter_names`), the one DoRA and other variants take."""
    h = make_host(tiny_base, expert_store)
    h._row_lora = None
    return h


def rows(sampling: Sampling) -> list[Request]:
    experts = ["family", "friends", "base", "nature"]
    return [Request(p, e, sampling, 1000 + 10 * i + j) for i, p in enumerate(PROMPTS) for j, e in enumerate(experts)]


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("path", ["lora_rows", "peft"])
def test_mixed_batch_equals_each_expert_alone(request, path, sampling):
    host = request.getfixturevalue("host" if path == "lora_rows" else "peft_path_host")
    reqs = rows(sampling)
    batched = host.generate(reqs)
    alone = [host.generate([r])[0] for r in reqs]
    assert [g.text for g in batched] == [g.text for g in alone]
    for b, a in zip(batched, alone, strict=True):
        assert b.tokens == a.tokens and b.mean_logprob == pytest.approx(a.mean_logprob, abs=1e-4)
    # The experts really differ, so equality above is not the base answering every row.
    for i in range(len(PROMPTS)):
        texts = [g.text for g in batched[4 * i : 4 * i + 4]]
        assert len(set(texts)) >= 3, texts


@pytest.mark.parametrize("path", ["lora_rows", "peft"])
def test_candidates_sharing_a_prompt_equal_each_candidate_alone(request, path):
    host = request.getfixturevalue("host" if path == "lora_rows" else "peft_path_host")
    # Three candidates per (prompt, expert): their prompt is computed once and shared, which must not change
    # what any candidate writes.
    experts = ["family", "friends", "base"]
    reqs = [
        Request(p, e, SAMPLED, 7 * i + c)
        for i, (p, e) in enumerate(zip(PROMPTS, experts, strict=True))
        for c in range(3)
    ]
    batches = []
    hook = host.model.get_base_model().register_forward_pre_hook(
        lambda m, args, kw: batches.append(kw["input_ids"].shape), with_kwargs=True
    )
    try:
        batched = host.generate(reqs)
    finally:
        hook.remove()
    # The prompts ran once each, not once per candidate, and a chunk of 16 positions left out the prompts that
    # are all padding there; then every row decoded, rows leaving as they end.
    first_step = next(k for k, b in enumerate(batches) if b[0] == len(reqs))
    lengths = [len(host._encode(r, r.sampling.max_new_tokens).ids) for r in reqs[::3]]
    width = padded_width(max(lengths), host.pad_multiple)
    chunks = [(at, min(at + 16, width - 1)) for at in range(0, width - 1, 16)]
    assert [tuple(b) for b in batches[:first_step]] == [
        (sum(width - n < end for n in lengths), end - at) for at, end in chunks
    ]
    assert batches[0][0] < len(PROMPTS) == batches[first_step - 1][0]  # the short prompts joined later
    rows_per_step = [b[0] for b in batches[first_step:]]
    assert rows_per_step == sorted(rows_per_step, reverse=True)
    alone = [host.generate([r])[0] for r in reqs]
    assert [g.text for g in batched] == [g.text for g in alone]
    for b, a in zip(batched, alone, strict=True):
        assert b.tokens == a.tokens and b.mean_logprob == pytest.approx(a.mean_logprob, abs=1e-4)
    assert len({g.text for g in batched[:3]}) >= 2  # the candidates did sample differently


def test_lora_rows_match_plain_peft(host, tiny_base, expert_store):
    from peft import PeftModel

    model, tok = load(tiny_base)
    peft_model = PeftModel.from_pretrained(model, str(expert_store / "experts" / "family" / "adapter")).eval()
    req = Request(PROMPTS[0], "family", GREEDY, 0)
    ids = tok(PROMPTS[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    ids = ids.new_tensor([[tok.eos_token_id] + ids[0].tolist()])
    ref = peft_model.generate(
        input_ids=ids,
        attention_mask=ids.new_ones(ids.shape),
        max_new_tokens=16,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    expected = tok.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    got = host.generate([req])[0].text
    assert got == expected[: len(got)] and len(got) > 0


def test_freeze_expert_is_swapped_in_once_per_round_and_out_again(host, tiny_base):
    import torch

    reqs = rows(GREEDY)
    host.restore_base()
    before = host.swaps
    host.generate(reqs)
    host.generate(reqs)
    # Round 1: shared rows on the base weights, then nature in. Round 2: nature out, shared rows, nature in.
    assert host.swaps - before == 3
    host.restore_base()
    model, _ = load(tiny_base)
    reference = dict(model.named_parameters())
    for name, p in host._params.items():
        if name in reference and p.numel():  # an emptied weight is held packed only, and never written
            assert torch.equal(p.detach(), reference[name].detach()), name
    assert set(host._originals) <= {name for name, p in host._params.items() if p.numel()}


def test_same_seed_same_sample_different_seed_different_sample(host):
    a = host.generate([Request(PROMPTS[0], "family", SAMPLED, 5)] * 2)
    b = host.generate([Request(PROMPTS[0], "family", SAMPLED, 6)])
    assert a[0].text == a[1].text
    assert b[0].text != a[0].text


def test_particles_and_punctuation_escape_the_repetition_penalty():
    assert exempt_token(" 는") and exempt_token("을") and exempt_token(".") and exempt_token("다.")
    assert not exempt_token(" 가족") and not exempt_token("우리")


def test_small_model_decodes_on_one_thread_and_restores_the_setting(host):
    import torch

    assert host.threads == 1  # a tiny model on a CPU
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        host.generate([Request(PROMPTS[0], "base", GREEDY, 0)])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_lora_rows_give_what_peft_mixed_batches_give(host, tiny_base):
    """The side-by-side adapter matmul is the same arithmetic as PEFT's per-adapter loop."""
    import torch

    assert host._row_lora is not None  # plain LoRA adapters take the batched path
    host.restore_base()  # a freeze expert may still be swapped in from an earlier round
    tok = host.tokenizer
    experts = ["family", "friends", None, "family"]
    ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"][:6] for p in [PROMPTS[0], PROMPTS[1]] * 2])
    with torch.inference_mode():
        peft_logits = host.model(input_ids=ids, adapter_names=[e or "__base__" for e in experts]).logits
        with host._row_lora.rows(experts):
            ours = host.model(input_ids=ids).logits
        with host.model.disable_adapter():
            base_only = host.model(input_ids=ids).logits
    assert torch.allclose(ours, peft_logits, atol=1e-5)
    assert torch.allclose(ours[2], base_only[2], atol=1e-6)  # the base row gets no adapter
    assert not torch.allclose(ours[0], base_only[0], atol=1e-3)  # an adapter row does


def test_narrow_kv_cache_stores_bfloat16_and_keeps_the_logits(tiny_base):
    import torch

    from ensemble.composition.kv_cache import cache_keyword, forward_parameters, narrow_cache

    model, tok = load(tiny_base)
    ids = torch.tensor([tok(PROMPTS[0], add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        full = model(input_ids=ids).logits
        cache = narrow_cache(torch.bfloat16, ids.shape[1] + 4)
        kw = cache_keyword(forward_parameters(model))
        narrow = model(input_ids=ids, **{kw: cache}).logits
        step = model(input_ids=ids[:, -1:], **{kw: cache}).logits  # one decoding step on the cache
    assert cache.layers[0].keys.dtype == torch.bfloat16 and cache.get_seq_length() == ids.shape[1] + 1
    assert torch.allclose(narrow, full, atol=0.05, rtol=0.01)
    assert torch.equal(narrow.argmax(-1), full.argmax(-1))
    assert step.shape[1] == 1 and torch.isfinite(step).all()


def test_narrow_kv_cache_keeps_a_shared_prompt_once_and_gives_each_row_its_states(tiny_base):
    import torch

    from ensemble.composition.kv_cache import cache_keyword, forward_parameters, narrow_cache

    model, tok = load(tiny_base)
    a, b = (tok(p, add_special_tokens=False)["input_ids"][:5] for p in PROMPTS[:2])
    nxt = torch.tensor([[a[0]], [b[0]], [b[1]]])  # each row's own next token
    kw = cache_keyword(forward_parameters(model))
    with torch.inference_mode():
        shared = narrow_cache(torch.bfloat16, 8)
        model(input_ids=torch.tensor([a, b]), **{kw: shared})
        shared.batch_select_indices(torch.tensor([0, 1, 1]))  # rows 1 and 2 continue prompt b
        got = model(input_ids=nxt, **{kw: shared}).logits
        copied = narrow_cache(torch.bfloat16, 8)
        model(input_ids=torch.tensor([a, b, b]), **{kw: copied})
        want = model(input_ids=nxt, **{kw: copied}).logits
    layer = shared.layers[0]
    assert layer.prompt_keys.shape[0] == 2 and layer.keys.shape[0] == 3  # the prompts once, new positions per row
    assert layer.keys.shape[2] == 8 - 5 and shared.get_seq_length() == 6
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got[1], got[2], atol=1e-3)  # rows sharing a prompt still go their own way


def test_rows_sharing_a_prompt_are_copied_run_by_run():
    from ensemble.composition.kv_cache import runs

    assert runs([0, 0, 0, 1, 1, 2]) == [(0, 3, 0), (3, 5, 1), (5, 6, 2)]
    assert runs([1, 0, 1]) == [(0, 1, 1), (1, 2, 0), (2, 3, 1)]
    assert runs([]) == []


def test_narrow_kv_cache_selecting_rows_again_keeps_each_rows_shared_prompt(tiny_base):
    import torch

    from ensemble.composition.kv_cache import cache_keyword, forward_parameters, narrow_cache

    model, tok = load(tiny_base)
    a, b = (tok(p, add_special_tokens=False)["input_ids"][:5] for p in PROMPTS[:2])
    kw = cache_keyword(forward_parameters(model))
    logits = []
    with torch.inference_mode():
        # shared (the prompts in either order), then copied
        for prompts, first in (([a, b], [0, 1, 1]), ([b, a], [1, 0, 0]), ([a, b, b], [0, 1, 2])):
            cache = narrow_cache(torch.bfloat16, 8)
            model(input_ids=torch.tensor(prompts), **{kw: cache})
            cache.batch_select_indices(torch.tensor(first))
            model(input_ids=torch.tensor([[a[0]], [b[0]], [b[1]]]), **{kw: cache})
            cache.batch_select_indices(torch.tensor([2, 0]))  # keep rows 2 and 0, in that order
            logits.append(model(input_ids=torch.tensor([[b[2]], [a[1]]]), **{kw: cache}).logits)
    assert torch.allclose(logits[0], logits[2], atol=1e-5) and torch.allclose(logits[1], logits[2], atol=1e-5)


def test_default_rows_per_pass_keep_the_kv_cache_within_a_share_of_the_weights(host):
    from ensemble.composition.host import KV_BUDGET, KV_BUDGET_FLOOR

    assert host.row_attention  # on a CPU: each distinct prompt kept once, every position in float32
    cfg = host.model.get_base_model().config
    per_position = cfg.n_layer * 2 * cfg.n_embd * 4  # keys and values in every layer
    weights = sum(p.numel() * p.element_size() for p in host.model.get_base_model().parameters())
    budget = max(KV_BUDGET * weights, KV_BUDGET_FLOOR)  # a tiny model gets the floor
    for width, new in ((32, 8), (1_000, 1_000), (50_000, 50_000), (5_000_000, 5_000_000)):
        for prompts in (64, 16):  # 64 rows of their own prompts, or 16 prompts of 4 candidates each
            rows = host.rows_within_budget(64, width, new, prompts)
            kept = per_position * (width * rows * prompts / 64 + rows * new)
            assert rows == 1 or kept <= budget
            assert rows == 64 or kept + per_position * (width * prompts / 64 + new) > budget
    assert host.rows_within_budget(64, 32, 8) == 64
    assert host.rows_within_budget(64, 20_000, 100, 16) > host.rows_within_budget(64, 20_000, 100, 64)
    assert host.rows_within_budget(64, 50_000, 50_000) < host.rows_within_budget(64, 1_000, 1_000)
    assert host.rows_within_budget(64, 5_000_000, 5_000_000) == 1


def test_each_generation_reports_its_tokens_loglikelihoods_and_where_they_end(host):
    for g in host.generate(rows(SAMPLED)):
        assert len(g.token_logprobs) == len(g.token_ends) == g.tokens
        assert sum(g.token_logprobs) / g.tokens == pytest.approx(g.mean_logprob)
        assert list(g.token_ends) == sorted(g.token_ends) and g.token_ends[-1] == len(g.text)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_an_overflow_in_the_logits_is_a_clear_error_not_token_zero(tiny_base, expert_store, bad):
    from ensemble.core.errors import NumericsError

    h = make_host(tiny_base, expert_store)
    head = h.output_layer()
    handle = head.register_forward_hook(lambda module, inputs, output: output + bad)
    try:
        with pytest.raises(NumericsError, match=r"NaN or infinity in 9 of 9 rows \(computed in float32\)"):
            h.generate(rows(GREEDY))
    finally:
        handle.remove()
    assert h.generate(rows(GREEDY)[:1])[0].tokens > 0


def test_on_a_gpu_rows_per_pass_follow_its_free_memory(host, monkeypatch):
    import torch

    from ensemble.composition.host import KV_FREE_SHARE

    gib = 2**30
    monkeypatch.setattr(host, "device", torch.device("cuda", 0))
    monkeypatch.setattr(host, "row_attention", False)  # transformers' attention on a GPU: every row its own states
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0], 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2 * gib)
    cfg = host.model.get_base_model().config
    per_row = cfg.n_layer * 2 * cfg.n_embd * 2 * 100_000  # 100k positions, bfloat16 keys and values
    free = [70 * gib]
    assert host.kv_budget() == KV_FREE_SHARE * 71 * gib  # the allocator's unused gigabyte counts as free
    assert host.rows_within_budget(4096, 100_000, 0) == int(KV_FREE_SHARE * 71 * gib // per_row)
    free[0] = 1 * gib
    assert host.rows_within_budget(4096, 100_000, 0) == int(KV_FREE_SHARE * 2 * gib // per_row)


@pytest.mark.parametrize("path", ["lora_rows", "peft"])
def test_rows_that_end_leave_the_batch_on_either_adapter_path(request, path):
    """End-of-text made a little likelier: rows of mixed experts end at different steps and leave the batch as they do
    (the adapters of the rows left must follow: each expert's rows still equal themselves alone)."""
    import torch

    host = request.getfixturevalue("host" if path == "lora_rows" else "peft_path_host")
    eos = host.tokenizer.eos_token_id
    head = host.output_layer()
    bias = torch.zeros(head.weight.shape[0])
    bias[eos] = 0.5
    experts = ["family", "friends", "base"]
    reqs = [Request(p, e, SAMPLED, 3 * i + k) for i, p in enumerate(PROMPTS) for k, e in enumerate(experts)]
    rows = []
    hooks = [
        head.register_forward_hook(lambda m, args, out: out + bias.to(out.dtype)),
        host.model.get_base_model().register_forward_pre_hook(
            lambda m, args, kw: rows.append(kw["input_ids"].shape[0]), with_kwargs=True
        ),
    ]
    try:
        batched = host.generate(reqs)
        shrinking = list(rows)
        alone = [host.generate([r])[0] for r in reqs]
    finally:
        for h in hooks:
            h.remove()
    ended = [g.tokens for g in batched if g.finished]
    assert len(set(ended)) >= 2 and any(not g.finished for g in batched)
    assert min(shrinking) < len(reqs) <= max(shrinking)
    assert [g.text for g in batched] == [g.text for g in alone]
    for b, a in zip(batched, alone, strict=True):
        assert (b.tokens, b.finished) == (a.tokens, a.finished)
        assert b.token_logprobs == a.token_logprobs  # to the bit, as the batch shrinks (packed output layer)
