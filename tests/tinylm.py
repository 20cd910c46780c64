"""A tiny causal LM for tests: byte-level BPE + 2-layer GPT-2 trained for seconds, saved like a real base.

    from tinylm import build_tiny_base   # tests/ is on sys.path under pytest
    base = build_tiny_base(tmp_path / "base", texts, steps=40)   # then base_model: <base> in ensemble.yaml

On a shared machine call torch.set_num_threads(1) first: a contended second thread is ~10x slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path


def build_tiny_base(directory: str | Path, texts: Sequence[str], steps: int = 40, *, seed: int = 0) -> Path:
    """Train tokenizer + model on `texts` for `steps` optimizer steps; returns the saved model directory
    (config.json, model.safetensors, tokenizer files, manifest.json). The tokenizer has `<pad>`,
    `<|endoftext|>` and the condition tokens `[TOPIC]`/`[TEXT]`."""
    from ensemble.training.pretrain import PRESETS, pretrain_on_texts

    directory = Path(directory)
    preset = replace(PRESETS["test"], max_steps=steps, epochs=1000)
    pretrain_on_texts(list(texts), directory, preset, seed=seed, precision="fp32")
    return directory


# The fixture vocabulary test corpora are made of: topic words and sentence frames.
TOPIC_WORDS = {
    "family": ["가족", "어머니", "아버지", "할머니", "동생", "저녁", "식탁", "집"],
    "friends": ["친구", "우정", "학교", "편지", "여행", "약속", "운동장", "웃음"],
    "nature": ["산", "바다", "계절", "봄", "숲", "바람", "꽃", "강"],
    "village": ["마을", "이웃", "골목", "시장", "잔치", "도서관", "주민", "공동체"],
}
SENTENCE_FRAMES = [
    "우리는 {a}와 {b}을 함께 이야기했다.",
    "{a}에서 {b}까지 함께 걸으며 {c}을 보았다.",
    "오늘도 {a}은 {b} 곁에서 함께 {c}을 기다렸다.",
    "{a}의 {b}은 언제나 {c}처럼 따뜻했다.",
    "함께 만든 {a}은 {b}과 {c}의 기억으로 남았다.",
]


def topic_corpus(words: dict[str, list[str]], per_topic: int, seed: int = 0) -> dict[str, list[str]]:
    """Each topic has six sentences of its own and its documents are 3-4 of them in some order, so an expert
    can learn its topic from the training passages and show it on the held-out ones."""
    import random

    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for topic, vocab in words.items():
        sentences = [
            SENTENCE_FRAMES[i % len(SENTENCE_FRAMES)].format(
                a=rng.choice(vocab), b=rng.choice(vocab), c=rng.choice(vocab)
            )
            for i in range(6)
        ]
        out[topic] = [" ".join(rng.sample(sentences, rng.randint(3, 4))) for _ in range(per_topic)]
    return out


def write_expert_files(d, name: str, base, passages: list[str], method: str, trained) -> None:
    """The dataset and manifest `train-experts` would write beside an adapter made by a test (manifest last)."""
    import json

    from ensemble.training.base import fingerprint_dir
    from ensemble.training.registry import ExpertManifest

    (d / "dataset").mkdir(parents=True, exist_ok=True)
    for split, ps in (("train", passages[2:]), ("val", passages[:2])):
        lines = [json.dumps({"id": f"{name}-{i}", "text": t}, ensure_ascii=False) for i, t in enumerate(ps)]
        (d / "dataset" / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = ExpertManifest(
        name=name,
        title=name.capitalize(),
        method=method,
        base={"name_or_path": str(base), "fingerprint": fingerprint_dir(base)},
        trained_tensors=trained,
        val_perplexity_before=100.0,
        val_perplexity_after=50.0,
    )
    (d / "manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
