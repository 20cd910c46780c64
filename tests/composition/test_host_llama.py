"""The expert host on a Llama-architecture base (nn.Linear projections, grouped-query attention, rotary
positions), not only GPT-2: mixed experts and candidates sharing a prompt give what each row gives alone.
The weights are random: these properties do not depend on what the model learned."""

from __future__ import annotations

import pytest

from ensemble.composition.host import ExpertHost
from ensemble.composition.types import Request, Sampling

PROMPTS = ["우리 가족은 저녁마다 식탁에 모인다.", "친구와 나는 학교 운동장에서 만났다.", "봄이 오면"]


@pytest.fixture(scope="module")
def llama_host(tiny_base, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("llama")
    tok = AutoTokenizer.from_pretrained(tiny_base)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root / "base")
    for seed, name in enumerate(("family", "friends")):
        torch.manual_seed(seed + 1)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
        get_peft_model(LlamaForCausalLM.from_pretrained(root / "base"), lora).save_pretrained(root / name)
    model = LlamaForCausalLM.from_pretrained(root / "base")
    return ExpertHost(model, tok, lora={"family": root / "family", "friends": root / "friends"})


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_llama_base_batches_mixed_experts_and_shared_prompts_exactly(llama_host, temperature):
    assert llama_host._row_lora is not None  # nn.Linear LoRA layers take the side-by-side path too
    sampling = Sampling(
        max_new_tokens=12,
        temperature=temperature,
        top_k=30,
        top_p=0.95,
        repetition_penalty=1.15,
        penalty_exempt_particles=True,
        no_repeat_ngram_size=0,
    )
    experts = ["family", "friends", "base"]
    reqs = [
        Request(p, e, sampling, 10 * i + c)
        for i, (p, e) in enumerate(zip(PROMPTS, experts, strict=True))
        for c in range(3)
    ]
    batched = llama_host.generate(reqs)
    alone = [llama_host.generate([r])[0] for r in reqs]
    assert [g.text for g in batched] == [g.text for g in alone]
    for b, a in zip(batched, alone, strict=True):
        assert b.tokens == a.tokens and b.mean_logprob == pytest.approx(a.mean_logprob, abs=1e-4)
    # The experts really change the model: the same prompt under each gives different log-likelihoods.
    same_prompt = [Request(PROMPTS[0], e, sampling, 5) for e in experts]
    logps = [g.mean_logprob for g in llama_host.generate(same_prompt)]
    assert len({round(x, 4) for x in logps}) == 3, logps
