"""Shared pieces of the evaluation tests (data, expert writers, a project on disk); the fixtures that use
them are in conftest.py."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import yaml

# tests/ is on sys.path under pytest (no __init__.py); a site-packages `tests` package shadows that name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinylm import SENTENCE_FRAMES, write_expert_files  # noqa: E402

WORDS = {
    "family": ["가족", "어머니", "아버지", "할머니", "동생", "저녁", "식탁", "부엌"],
    "friends": ["친구", "우정", "학교", "편지", "여행", "약속", "운동장", "선배"],
    "nature": ["산", "바다", "계절", "숲", "바람", "꽃", "강", "들판"],
}
FRAMES = SENTENCE_FRAMES
# Natural prose, nothing like the templates: what a copied passage looks like.
SOURCE = (
    "등대지기 노인은 매일 새벽 네 시에 일어나 계단 일흔두 개를 올랐다. "
    "렌즈에 낀 소금기를 마른 천으로 닦고, 기름통의 눈금을 공책에 적은 뒤에야 보온병의 보리차를 마셨다. "
    "폭풍이 지나간 다음 날이면 그는 해안선을 따라 걸으며 "
    "떠밀려 온 부표와 그물 조각을 모아 창고 벽에 가지런히 걸어 두었다. "
    "마을 아이들은 그 창고를 바다 박물관이라고 불렀다."
)
# Never in the corpus: original prose.
ORIGINAL = (
    "천문대 관측실의 돔이 천천히 열리자 차가운 공기가 쏟아져 들어왔다. 연구원은 망원경의 초점을 조정하며 "
    "목성의 위성 네 개가 일렬로 늘어선 모습을 기록했다. 새벽이 가까워질수록 습도가 올라 렌즈 가장자리에 "
    "이슬이 맺혔고, 그는 전열선의 온도를 두 단계 높였다."
)


def sentences_of(topic: str, n: int, rng: random.Random) -> list[str]:
    words = WORDS[topic]
    return [rng.choice(FRAMES).format(a=rng.choice(words), b=rng.choice(words), c=rng.choice(words)) for _ in range(n)]


def make_corpus(per_topic: int = 12, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {t: [" ".join(sentences_of(t, rng.randint(3, 4), rng)) for _ in range(per_topic)] for t in WORDS}


CORPUS = make_corpus()


def topical_text(topic: str, sentences: int = 8, seed: int = 99) -> str:
    """New text in a topic's vocabulary (sentences not in the corpus as such): what its expert would write."""
    return " ".join(sentences_of(topic, sentences, random.Random(seed)))


def train_adapter(base: Path, out: Path, passages: list[str], method: str, steps: int = 60) -> list[str]:
    """A short real fine-tuning on `passages`, saved as `train-experts` saves it; returns freeze tensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=8,
                lora_alpha=16,
                target_modules=["c_attn", "c_proj"],
                fan_in_fan_out=True,
                task_type="CAUSAL_LM",
            ),
        )
        lr = 1e-2
    else:
        top = model.config.n_layer - 1
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith((f"transformer.h.{top}.", "transformer.ln_f."))
        lr = 3e-3
    ids = [tok.eos_token_id]
    for p in passages:
        ids += tok(p, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    block = 64
    blocks = [ids[i : i + block] for i in range(0, len(ids) - block, block // 2)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        x = torch.tensor([blocks[step % len(blocks)]])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    if method == "lora":
        model.save_pretrained(str(out), safe_serialization=True)
        return []
    from safetensors.torch import save_file

    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "trained.safetensors"))
    return sorted(tensors)


def write_expert(work: Path, base: Path, name: str, method: str, passages: list[str]) -> None:
    """An expert directory as `train-experts` leaves it: adapter/, dataset/{train,val}.jsonl, manifest."""

    d = work / "experts" / name
    trained = train_adapter(base, d / "adapter", passages, method)
    write_expert_files(d, name, base, passages, method, trained)


class Project:
    def __init__(self, root: Path, base: Path | None) -> None:
        self.root = root
        self.config_path = root / "ensemble.yaml"
        corpus = root / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for topic, passages in CORPUS.items():
            for i, text in enumerate(passages):
                (corpus / f"{topic}-{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
        (corpus / "lighthouse.txt").write_text(SOURCE + "\n", encoding="utf-8")
        doc: dict = {"corpus": ["corpus/"], "work_dir": "work"}
        if base is not None:
            doc["base_model"] = str(base)
        self.config_path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    @property
    def cfg(self):
        from ensemble.config import load_project

        return load_project(self.config_path)

    def document(
        self, sections: list[tuple[str, str]], *, title: str = "함께 사는 이야기", name: str = "essay.md"
    ) -> Path:
        parts = [f"# {title}"] + [f"## {h}\n\n{body}" for h, body in sections]
        path = self.root / name
        path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        return path

    def outline(self, sections: list[tuple[str, str]], *, name: str = "outline.yaml") -> Path:
        doc = {
            "title": "함께 사는 이야기",
            "sections": [{"heading": h, "expert": e, "prompt": "함께라는 말은 따뜻하다."} for h, e in sections],
        }
        path = self.root / name
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path
