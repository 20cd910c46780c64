"""Shared pieces of the composition tests (data, expert writers, a project on disk); the fixtures that use
them are in conftest.py."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import yaml

# `tests/` is on sys.path under pytest (its conftest has no package); a site-packages `tests` shadows it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinylm import SENTENCE_FRAMES, TOPIC_WORDS, write_expert_files  # noqa: E402

WORDS = {t: TOPIC_WORDS[t] for t in ("family", "friends", "nature")}
FRAMES = SENTENCE_FRAMES


def make_corpus(per_topic: int = 12, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for topic, words in WORDS.items():
        out[topic] = [
            " ".join(
                rng.choice(FRAMES).format(a=rng.choice(words), b=rng.choice(words), c=rng.choice(words))
                for _ in range(rng.randint(3, 4))
            )
            for _ in range(per_topic)
        ]
    return out


CORPUS = make_corpus()


def make_lora_adapter(base: Path, out: Path, seed: int, scale: float = 0.3) -> Path:
    """A random LoRA adapter saved as PEFT saves a trained one (B is non-zero, so it changes outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    return out


def make_freeze_tensors(base: Path, out: Path, seed: int, scale: float = 0.05) -> list[str]:
    """The upper block and final norm of the base, perturbed: what a `freeze` expert saves."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    top = model.config.n_layer - 1
    tensors = {
        n: (p.detach() + scale * torch.randn_like(p)).contiguous()
        for n, p in model.named_parameters()
        if n.startswith((f"transformer.h.{top}.", "transformer.ln_f."))
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "trained.safetensors"))
    return sorted(tensors)


def write_expert(work: Path, base: Path, name: str, method: str, seed: int, passages: list[str]) -> None:
    """An expert as `train-experts` leaves it: adapter/, dataset/{train,val}.jsonl, manifest.json last."""
    d = work / "experts" / name
    adapter = d / "adapter"
    trained: list[str] = []
    if method == "lora":
        make_lora_adapter(base, adapter, seed)
    else:
        trained = make_freeze_tensors(base, adapter, seed)
    write_expert_files(d, name, base, passages, method, trained)


# Small, fast sections: a few chaining steps each on the tiny base.
FAST = {"target_chars": 90, "max_new_tokens": 24, "candidates": 2, "paragraph_chars": 50, "max_steps": 12}

SECTIONS = [
    {"heading": "가족의 저녁", "expert": "family", "prompt": "우리 가족은 저녁마다 식탁에 모인다."},
    {"heading": "친구와 함께", "expert": "friends", "prompt": "친구와 나는 학교 운동장에서 만났다."},
    {"heading": "산과 바다", "expert": "nature", "prompt": "봄이 오면 우리는 함께 산에 오른다."},
    {"heading": "함께라는 말", "expert": "base", "prompt": "함께라는 말은 따뜻하다."},
]


class Project:
    def __init__(self, root: Path, base: Path, store: Path) -> None:
        self.root = root
        self.work = root / "work"
        shutil.copytree(store, self.work)
        self.config_path = root / "ensemble.yaml"
        self.config_path.write_text(
            yaml.safe_dump({"work_dir": "work", "base_model": str(base)}, allow_unicode=True),
            encoding="utf-8",
        )

    @property
    def cfg(self):
        from ensemble.config import load_project

        return load_project(self.config_path)

    def outline(
        self,
        sections: list[dict] | None = None,
        *,
        defaults: dict | None = None,
        name: str = "outline.yaml",
        title: str = "함께 사는 이야기",
    ) -> Path:
        doc = {"title": title, "defaults": {**FAST, **(defaults or {})}, "sections": sections or SECTIONS}
        path = self.root / name
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path
