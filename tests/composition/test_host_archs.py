"""The expert host on today's architectures (GPT-2, Llama, Qwen2, GPT-NeoX, Gemma 3 with sliding-window layers
and a `<bos>` tokenizer): batched rows of mixed experts, candidates sharing a prompt and sampled rows give what
each row gives alone, and a row alone gives what transformers itself generates with that expert."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tinyarchs import ARCHS, LORA_TARGETS, SLIDING_WINDOW, save_freeze_expert, save_lora_expert, tiny_model
from tinyarchs import tiny_tokenizer as make_tokenizer

from ensemble.composition.host import ExpertHost
from ensemble.composition.types import Request, Sampling
from ensemble.training.adapters import lora_targets

PROMPTS = ["우리 가족은 저녁마다 식탁에 모인다.", "친구와 나는 학교 운동장에서 만났다.", "봄이 오면"]
LONG = "우리 가족은 저녁마다 식탁에 모인다. 친구와 나는 학교 운동장에서 만났다. 봄이 오면"
EXPERTS = ["family", "friends", "base", "nature"]  # two LoRA experts, the base, a freeze expert


def sampling(temperature: float, **over) -> Sampling:
    settings = {
        "max_new_tokens": 12,
        "temperature": temperature,
        "top_k": 30,
        "top_p": 0.95,
        "repetition_penalty": 1.15,
        "penalty_exempt_particles": True,
        "no_repeat_ngram_size": 3,
        **over,
    }
    return Sampling(**settings)


@pytest.fixture(scope="module", params=ARCHS)
def arch(request, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp(name)
    tok = make_tokenizer(name)
    model = tiny_model(name, tok)
    lora = {
        "family": save_lora_expert(model, root / "family", 1),
        "friends": save_lora_expert(model, root / "friends", 2),
    }
    freeze = {"nature": save_freeze_expert(model, root / "nature", 3)}
    host = ExpertHost(model, tok, lora=lora, freeze=freeze, int8_head=True)  # int8 even on a tiny vocabulary
    # With a float32 output layer: the same arithmetic as transformers' own, to compare with it.
    exact = ExpertHost(tiny_model(name, tok), tok, lora=lora, freeze=freeze, int8_head=False)
    return SimpleNamespace(name=name, tok=tok, host=host, exact=exact, lora=lora, freeze=freeze)


def assert_same(batched, alone) -> None:
    assert [g.text for g in batched] == [g.text for g in alone]
    for b, a in zip(batched, alone, strict=True):
        assert b.tokens == a.tokens and b.finished == a.finished
        # The same bits: padding to a multiple of PAD_MULTIPLE keeps attention's sums in the same order.
        assert b.token_logprobs == a.token_logprobs


@pytest.mark.parametrize("name", ARCHS)
def test_lora_target_modules_are_detected_per_architecture(name):
    tok = make_tokenizer(name)
    assert lora_targets(tiny_model(name, tok)) == LORA_TARGETS[name]


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_mixed_experts_in_one_batch_equal_each_row_alone(arch, temperature):
    host = arch.host
    assert host._row_lora is not None  # every architecture's LoRA layers take the side-by-side path
    reqs = [
        Request(p, e, sampling(temperature), 100 * i + j) for i, p in enumerate(PROMPTS) for j, e in enumerate(EXPERTS)
    ]
    batched = host.generate(reqs)
    assert_same(batched, [host.generate([r])[0] for r in reqs])
    # The experts really change the model: the same prompt under each gives different log-likelihoods.
    for i in range(len(PROMPTS)):
        logps = {round(g.mean_logprob, 4) for g in batched[4 * i : 4 * i + 4]}
        assert len(logps) == 4, logps


def test_candidates_sharing_a_prompt_equal_each_candidate_alone(arch):
    host = arch.host
    # A section's candidates: same prompt and expert, own seeds; the prompt is computed once per section.
    # The long prompt is prefilled in chunks, past Gemma 3's sliding window.
    prompts = [PROMPTS[0], PROMPTS[1], LONG, PROMPTS[2]]
    reqs = [
        Request(p, e, sampling(1.0), 7 * i + c)
        for i, (p, e) in enumerate(zip(prompts, EXPERTS, strict=True))
        for c in range(3)
    ]
    batches = []
    base = host.model.get_base_model()
    hook = base.register_forward_pre_hook(lambda m, a, kw: batches.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        batched = host.generate(reqs)
    finally:
        hook.remove()
    # family, friends and base rows: one prompt row each (the long prompt alone in the chunks where the others
    # are all padding), then 9 rows; the freeze rows on their own: 1, then 3.
    assert batches[0] == 1 and 9 in batches and max(batches[: batches.index(9)]) == 3
    assert batches[-1] == 3 and 1 in batches[batches.index(9) :]
    assert_same(batched, [host.generate([r])[0] for r in reqs])
    for i in range(len(prompts)):
        assert len({g.text for g in batched[3 * i : 3 * i + 3]}) >= 2  # the candidates did sample differently


def test_rows_equal_themselves_alone_on_two_threads(arch):
    """Bases over 50M parameters compose on torch's default threads: torch's fused attention split its work
    between two threads by the batch's shape (a row alone rounded apart from itself batched); the host's own
    attention and packed matmuls do not."""
    host = ExpertHost(
        tiny_model(arch.name, arch.tok), arch.tok, lora=arch.lora, freeze=arch.freeze, int8_head=False, threads=2
    )
    reqs = [Request(p, e, sampling(1.0), 5 * i + j) for i, p in enumerate(PROMPTS) for j, e in enumerate(EXPERTS)]
    reqs += [Request(LONG, "family", sampling(1.0), 40 + c) for c in range(3)]
    assert_same(host.generate(reqs), [host.generate([r])[0] for r in reqs])


@pytest.mark.parametrize("expert", ["base", "family", "nature"])
def test_a_row_gives_what_transformers_generates_with_that_expert(arch, expert):
    """Greedy, against transformers' own `generate` without a KV cache: every position attends through the
    model's own masks (Gemma 3's sliding window included), so this checks our cache, prefill and adapters."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import GenerationConfig

    host, tok = arch.exact, arch.tok
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = [start, *tok(LONG, add_special_tokens=False)["input_ids"]]
    if arch.name == "gemma3":
        assert len(ids) > 2 * SLIDING_WINDOW and start != tok.eos_token_id
    req = Request(LONG, expert, sampling(0.0, repetition_penalty=1.0, no_repeat_ngram_size=0, max_new_tokens=10), 0)
    narrow, host.narrow_kv = host.narrow_kv, False  # a float32 cache: the same arithmetic as the reference
    try:
        got = host.generate([req])[0]
    finally:
        host.narrow_kv = narrow

    model = tiny_model(arch.name, tok)
    if expert == "nature":
        model.load_state_dict(load_file(str(arch.freeze["nature"])), strict=False)
    if expert == "family":
        model = PeftModel.from_pretrained(model, str(arch.lora["family"])).eval()
    x = torch.tensor([ids])
    vocab = model.get_output_embeddings().weight.shape[0]
    config = GenerationConfig(
        max_new_tokens=10,
        do_sample=False,
        use_cache=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        suppress_tokens=list(range(len(tok), vocab)) or None,  # Gemma's padded vocabulary: ids nothing decodes
        output_logits=True,
        return_dict_in_generate=True,
    )
    with torch.inference_mode():
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=config)
    new = out.sequences[0, x.shape[1] :]
    logp = [torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(out.logits, new.tolist(), strict=True)]
    assert got.text == tok.decode(new, skip_special_tokens=True)
    assert got.tokens == len(new)
    assert got.mean_logprob == pytest.approx(sum(logp) / len(logp), abs=1e-4)


def test_a_prompt_starts_with_the_start_token_once(arch, monkeypatch):
    """Gemma's tokenizer prepends `<bos>` itself; the host adds the start token and must not double it."""
    import ensemble.composition.host as host_module

    host, tok = arch.host, arch.tok
    seen = []
    decode = host_module.decode
    monkeypatch.setattr(host_module, "decode", lambda *a: seen.append(a[3][0][a[4][0] == 1].tolist()) or decode(*a))
    host.generate([Request(PROMPTS[2], "family", sampling(0.0), 0)])
    text = tok(PROMPTS[2], add_special_tokens=False)["input_ids"]
    if arch.name == "gemma3":
        assert tok(PROMPTS[2])["input_ids"] == [tok.bos_token_id, *text]  # the tokenizer's own behaviour
        assert seen[0] == [tok.bos_token_id, *text]
    else:
        assert seen[0] == [tok.eos_token_id, *text]
