"""What the host's decoding applies, and to what: its own sampler only (never the base's generation_config), the
penalties over the row's text only (not its start token or condition prefix; byte fragments are text), a long
prompt cut in its text (never its start token or prefix), and only ids the tokenizer can decode.

Most tests steer a tiny random model with a bias added to its logits (far larger than its own logits), so the
token a rule must (or must not) pick is known in advance."""

from __future__ import annotations

import pytest
from tinyarchs import BYTE_FALLBACK, tiny_model, tiny_tokenizer

import ensemble.composition.host as host_module
from ensemble.composition.host import ExpertHost, exempt_token
from ensemble.composition.types import Request, Sampling

PROMPTS = ["우리 가족은 저녁마다 식탁에 모인다.", "친구와 나는 학교 운동장에서 만났다.", "봄이 오면"]
LONG = "우리 가족은 저녁마다 식탁에 모인다. 친구와 나는 학교 운동장에서 만났다. 봄이 오면 "
PREFIX = "[TOPIC] family [TEXT]"


def sampling(**over) -> Sampling:
    settings = {
        "max_new_tokens": 1,
        "temperature": 0.0,
        "top_k": 30,
        "top_p": 0.95,
        "repetition_penalty": 1.0,
        "penalty_exempt_particles": True,
        "no_repeat_ngram_size": 0,
        **over,
    }
    return Sampling(**settings)


def steer(host: ExpertHost, bias: dict[int, float]):
    """Add `bias` to the model's logits (a hook handle: `.remove()` it)."""
    import torch

    head = host.output_layer()
    add = torch.zeros(head.weight.shape[0])
    for i, b in bias.items():
        add[i] = b
    return head.register_forward_hook(lambda m, args, out: out + add.to(out.dtype))


def start_token(tok) -> int:
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


@pytest.fixture(scope="module", params=["gpt2", "gemma3"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def tok(arch):
    return tiny_tokenizer(arch)


@pytest.fixture(scope="module")
def host(arch, tok, tmp_path_factory):
    from tinyarchs import save_lora_expert

    model = tiny_model(arch, tok)
    adapter = save_lora_expert(model, tmp_path_factory.mktemp(f"{arch}-lora") / "family", 1)
    return ExpertHost(model, tok, lora={"family": adapter})


def test_the_base_models_own_generation_config_is_not_applied(host, tok):
    """A base that ships decoding defaults must give what a base without them gives: HF `generate` would
    otherwise run them under our sampler (penalised twice, candidates ranked on altered logits)."""
    from transformers import GenerationConfig

    rows = [
        Request(p, e, sampling(max_new_tokens=12, temperature=t, repetition_penalty=1.15), 10 * i + k)
        for i, p in enumerate(PROMPTS)
        for k, (e, t) in enumerate([("family", 0.0), ("base", 1.0), ("family", 1.0)])
    ]
    model = host.model.get_base_model()
    plain = host.generate(rows)
    qq = tok.convert_tokens_to_ids("Q")
    own = model.generation_config
    model.generation_config = GenerationConfig(
        repetition_penalty=5.0,
        no_repeat_ngram_size=2,
        min_new_tokens=8,
        bad_words_ids=[[qq]],
        suppress_tokens=[qq + 1],
        do_sample=True,
        temperature=0.3,
        top_k=3,
        top_p=0.5,
    )
    try:
        shipped = host.generate(rows)
        # An end of text the model is sure of ends the row at once, min_new_tokens or not.
        hook = steer(host, {tok.eos_token_id: 50.0})
        try:
            ended = host.generate(rows[:3])
        finally:
            hook.remove()
    finally:
        model.generation_config = own
    assert [g.text for g in shipped] == [g.text for g in plain]
    for s, p in zip(shipped, plain, strict=True):
        assert s.tokens == p.tokens and s.mean_logprob == pytest.approx(p.mean_logprob, abs=1e-5)
    assert all(g.finished and g.tokens == 1 for g in ended)


def test_a_byte_fragment_is_text_not_punctuation():
    assert not exempt_token("\ufffd") and not exempt_token(" \ufffd") and not exempt_token("\ufffd.")
    assert exempt_token(".") and exempt_token(" 는") and exempt_token("…")


def test_no_byte_fragment_of_the_vocabulary_escapes_the_penalty(host, tok):
    vocab = host.model.get_output_embeddings().weight.shape[0]
    exempt = host._exempt_mask(vocab)
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    fragments = [i for i, t in enumerate(texts) if "\ufffd" in t]
    assert len(fragments) >= 64  # byte-level BPE pieces of Korean syllables, or Gemma's <0xEB> fallbacks
    assert not exempt[fragments].any()
    assert exempt[tok.convert_tokens_to_ids(".")]


def test_a_byte_fragment_in_the_prompt_is_penalised():
    tok = tiny_tokenizer("gemma3")  # it spells the syllables it lacks in bytes
    host = ExpertHost(tiny_model("gemma3", tok), tok)
    prompt = f"{BYTE_FALLBACK[1]}이 오면"
    fragment = tok(prompt, add_special_tokens=False)["input_ids"][0]
    assert tok.decode([fragment]) == "\ufffd"
    other = tok.convert_tokens_to_ids("Q")
    hook = steer(host, {fragment: 30.0, other: 25.0})
    try:
        [g] = host.generate([Request(prompt, "base", sampling(repetition_penalty=1.5), 0)])
    finally:
        hook.remove()
    assert g.text == "Q"  # the fragment's logit was divided by 1.5 like any text token's


@pytest.mark.parametrize("rule", ["repetition_penalty", "no_repeat_ngram"])
def test_the_start_token_is_not_text_for_the_penalties(host, tok, rule):
    """The start token (`<bos>`, or GPT-2's end-of-text) opens every prompt; penalising it as repeated text
    would, where it is also the end-of-text token, keep rows from ever ending."""
    start = start_token(tok)
    other = tok.convert_tokens_to_ids("Q")
    settings = {"repetition_penalty": 1.5} if rule == "repetition_penalty" else {"no_repeat_ngram_size": 1}
    hook = steer(host, {start: 30.0, other: 25.0})
    try:
        [g] = host.generate([Request(PROMPTS[0], "base", sampling(**settings), 0)])
    finally:
        hook.remove()
    assert g.text == "" and g.tokens == 1  # the start token won: it decodes to nothing
    assert g.finished == (start == tok.eos_token_id)


def test_the_condition_prefix_is_not_text_for_the_penalties(host, tok):
    prefix = "[TOPIC] Z [TEXT]"
    name = tok(" Z", add_special_tokens=False)["input_ids"][-1]
    assert name in tok(prefix, add_special_tokens=False)["input_ids"]
    hook = steer(host, {name: 30.0, tok.convert_tokens_to_ids("Q"): 25.0})
    try:
        [g] = host.generate([Request(PROMPTS[0], "family", sampling(repetition_penalty=1.5), 0, prefix=prefix)])
    finally:
        hook.remove()
    assert g.text == tok.decode([name])


def test_a_long_prompt_keeps_its_start_token_and_prefix_and_loses_its_oldest_text(arch, tok, monkeypatch):
    model = tiny_model(arch, tok, max_positions=48)
    host = ExpertHost(model, tok)
    seen = []
    decode = host_module.decode
    monkeypatch.setattr(host_module, "decode", lambda *a: seen.append(a[3][0][a[4][0] == 1].tolist()) or decode(*a))
    text = LONG * 3
    [g] = host.generate([Request(text, "base", sampling(max_new_tokens=8), 0, prefix=PREFIX)])
    head = [start_token(tok), *tok(PREFIX, add_special_tokens=False)["input_ids"]]
    ids = seen[0]
    assert len(ids) == 48 - 8  # the context holds prompt and continuation
    assert ids[: len(head)] == head
    rest = ids[len(head) :]
    assert rest == tok(text, add_special_tokens=False)["input_ids"][-len(rest) :]
    assert g.tokens == 8


def test_a_chosen_ids_log_probability_is_under_the_scores_before_the_penalties():
    """The penalties steer the choice; the log-probability a candidate is ranked by is the model's own."""
    import torch

    from ensemble.composition.host import RowSampler

    scores = torch.tensor([[4.0, 3.0, 1.0, 0.5], [2.0, -1.0, 5.0, 0.0], [0.5, 0.2, 3.0, 6.0]])
    ids = torch.tensor([[3, 0, 0], [3, 2, 1], [0, 3, 3]])  # each row's text from position 1 on
    settings = [sampling(repetition_penalty=p, no_repeat_ngram_size=n) for p, n in ((3.0, 0), (1.2, 0), (1.0, 2))]
    sampler = RowSampler(settings, [0, 1, 2], [1, 1, 1], None)
    chosen = sampler.choose(ids, scores.clone(), [0, 1, 2])
    # row 0: 4/3 < 3, so id 1; row 1: 5/1.2 still first; row 2: the bigram (3, 3) is banned, so id 2
    assert chosen == [1, 2, 2]
    want = torch.log_softmax(scores, dim=-1)[torch.arange(3), torch.tensor(chosen)]
    assert [lp[0] for lp in sampler.logprobs()] == pytest.approx(want.tolist(), abs=1e-6)


def test_ids_past_the_tokenizer_are_never_chosen():
    """Gemma 3's embedding matrix has rows no token decodes to; a row must not spend its tokens on them."""
    tok = tiny_tokenizer("gemma3")
    model = tiny_model("gemma3", tok)
    host = ExpertHost(model, tok)
    assert model.config.vocab_size > len(tok)
    padded = len(tok) + 3
    hook = steer(host, {padded: 20.0})
    try:
        gens = host.generate(
            [Request(PROMPTS[0], "base", sampling(max_new_tokens=4, temperature=t), 0) for t in (0, 1)]
        )
    finally:
        hook.remove()
    for g in gens:
        assert g.tokens == 4 and g.text != ""


def test_a_row_that_ends_leaves_the_batch_and_the_others_write_what_they_write_alone(host, tok):
    """End-of-text made likely: sampled rows end at different steps, each one leaves the batch as it ends (its
    cache rows and adapter with it), and the rows still running write what they write alone."""
    rows = [
        Request(p, e, sampling(max_new_tokens=16, temperature=1.0, no_repeat_ngram_size=3), 5 * i + k)
        for i, p in enumerate(PROMPTS)
        for k, e in enumerate(["family", "base", "family"])
    ]
    shapes = []
    hook = steer(host, {tok.eos_token_id: 2.0})
    count = host.model.get_base_model().register_forward_pre_hook(
        lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        batched = host.generate(rows)
        count.remove()
        alone = [host.generate([r])[0] for r in rows]
    finally:
        count.remove()
        hook.remove()
    lengths = sorted({g.tokens for g in batched if g.finished})
    assert len(lengths) >= 2 and any(not g.finished for g in batched)  # rows ended at different steps
    steps = [rows_ for rows_, width in shapes if width == 1]
    assert steps[0] == len(rows) and steps == sorted(steps, reverse=True) and steps[-1] < len(rows)
    assert len(steps) == max(g.tokens for g in batched)
    assert [g.text for g in batched] == [g.text for g in alone]
    for b, a in zip(batched, alone, strict=True):
        assert (b.tokens, b.finished) == (a.tokens, a.finished)
        assert b.mean_logprob == pytest.approx(a.mean_logprob, abs=1e-4)
