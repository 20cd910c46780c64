"""Experts trained on bases other than GPT-2 (Llama; Gemma 3 with sliding-window layers, `<bos>` and a padded
vocabulary): a LoRA and a freeze expert train, load in the host and batch there, compose a document and are
scored by the evaluation. The base is random: what is checked is that every step works, not what it learned."""

from __future__ import annotations

import math

import pytest
import yaml
from tinyarchs import LORA_TARGETS, save_tiny_base
from training_support import CORPUS, Project, topic
from transformers import TrainerCallback

PROMPT = "우리 가족은 저녁마다 식탁에 모인다."


class SampleHeads(TrainerCallback):
    """The first token of every training sample, per expert trained."""

    def __init__(self) -> None:
        self.heads: list[list[int]] = []

    def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
        data = train_dataloader.dataset
        self.heads.append([data[i]["input_ids"][0] for i in range(len(data))])


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_lora_and_freeze_experts_train_compose_and_score_on_the_base(tmp_path, fake_retriever, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ensemble.composition.host import ExpertHost
    from ensemble.composition.run import compose
    from ensemble.composition.types import Request, Sampling
    from ensemble.evaluation.perplexity import score_texts
    from ensemble.training.experts import train_experts

    base = save_tiny_base(arch, tmp_path / "base", [p for ps in CORPUS.values() for p in ps])
    project = Project(tmp_path, base)
    topics = project.topics(
        [topic("family", method="lora"), topic("nature", method="freeze", freeze={"layers": 1})],
        defaults={"max_steps": 3, "learning_rate": 1e-2, "block_size": 16},
    )
    heads = SampleHeads()
    family, nature = train_experts(project.cfg, topics, callbacks=[heads])
    assert family.method == "lora" and nature.method == "freeze" and family.steps == nature.steps == 3
    experts = project.root / "work" / "experts"
    config = yaml.safe_load((experts / "family" / "adapter" / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(LORA_TARGETS[arch])
    trained = nature.trained_tensors
    assert any(".layers.1." in n for n in trained) and not any(".layers.0." in n or "embed" in n for n in trained)

    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    # Every sample, also one cut mid-passage, opens with the start token the host and the evaluation put before
    # every prompt: Gemma's <bos>. The byte-level BPE's start token is its end-of-text token, which packing
    # already puts between passages.
    assert all(len(h) > 3 for h in heads.heads)  # 16-token blocks: most start mid-passage
    assert [all(t == tok.bos_token_id for t in h) for h in heads.heads] == [arch == "gemma3"] * 2
    host = ExpertHost(
        model,
        tok,
        lora={"family": experts / "family" / "adapter"},
        freeze={"nature": experts / "nature" / "adapter" / "trained.safetensors"},
    )
    sampling = Sampling(
        max_new_tokens=8,
        temperature=0,
        top_k=30,
        top_p=0.95,
        repetition_penalty=1.15,
        penalty_exempt_particles=True,
        no_repeat_ngram_size=0,
    )
    reqs = [Request(PROMPT, e, sampling, 0) for e in ("family", "nature", "base")]
    batched = host.generate(reqs)
    assert [g.mean_logprob for g in batched] == pytest.approx([host.generate([r])[0].mean_logprob for r in reqs])
    assert len({round(g.mean_logprob, 4) for g in batched}) == 3  # each expert changed the model

    outline = project.root / "outline.yaml"
    sections = [
        {"heading": "가족", "expert": "family", "prompt": PROMPT},
        {"heading": "자연", "expert": "nature", "prompt": "봄이 오면 우리는 함께 산에 오른다."},
    ]
    doc = {
        "title": "함께",
        "defaults": {"target_chars": 60, "max_new_tokens": 8, "candidates": 2, "max_steps": 2},
        "sections": sections,
    }
    outline.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    document = compose(project.cfg, outline, seed=1)
    assert [s.stats["steps"] for s in document.sections] == [2, 2] and PROMPT in document.markdown

    scored = score_texts(project.cfg, [PROMPT, PROMPT], ["family", "nature"])
    assert all(math.isfinite(n.perplexity) for n in [*scored.base, *scored.expert]), scored.notes
