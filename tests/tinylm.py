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
    'family': ['가족', '어머니', '아버지', '할머니', '동생', '저녁', '식탁', '집'],
    'friends': ['친구', '우정', '학교', '편지', '여행', '약속', '운동장', '웃음'],
    'nature': ['산', '바다', '계절', '봄', '숲', '바람', '꽃', '강'],
    'village': ['마을', '이웃', '골목', '시장', '잔치', '도서관', '주민', '공동체'],
}
SENTENCE_FRAMES = [
    '우리는 {a}와 {b}을 함께 이야기했다.',
    '{a}에서 {b}까지 함께 걸으며 {c}을 보았다.',
    '오늘도 {a}은 {b} 곁에서 함께 {c}을 기다렸다.',
    '{a}의 {b}은 언제나 {c}처럼 따뜻했다.',
    '함께 만든 {a}은 {b}과 {c}의 기억으로 남았다.',
]
