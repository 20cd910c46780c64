"""Tiny random causal LMs of today's architectures, and tokenizers for them, built in well under a second.

    from tinyarchs import ARCHS, tiny_tokenizer, tiny_model   # tests/ is on sys.path under pytest

GPT-2, Llama, Qwen2 and GPT-NeoX get a byte-level BPE tokenizer whose start token is its end-of-text token (as
GPT-2's); Gemma 3 gets a Gemma tokenizer (`<bos>` prepended, `<0xEB>` byte fallback for characters it lacks) and
a model with sliding-window and full-attention layers whose window is shorter than the test prompts, and whose
vocabulary is padded past the tokenizer's (as Gemma 3's is). The weights are random: what the tests check
(batching, caching, adapters) does not depend on what a model learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinylm import SENTENCE_FRAMES, TOPIC_WORDS

ARCHS = ("gpt2", "llama", "qwen2", "gpt_neox", "gemma3")

# The LoRA targets training must detect on each (ensemble.training.adapters.lora_targets).
LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt_neox": ["query_key_value"],
    "gemma3": ["q_proj", "k_proj", "v_proj", "o_proj"],
}

SLIDING_WINDOW = 8
# Characters the Gemma tokenizer lacks: they fall back to UTF-8 byte tokens (each decodes to U+FFFD alone).
BYTE_FALLBACK = "족봄"
TEXTS = [*SENTENCE_FRAMES, *(" ".join(ws) for ws in TOPIC_WORDS.values())]


def tiny_tokenizer(arch: str, texts: list[str] = TEXTS) -> Any:
    return gemma_tokenizer(texts) if arch == "gemma3" else byte_bpe_tokenizer(texts)


def byte_bpe_tokenizer(texts: list[str] = TEXTS, vocab_size: int = 400) -> Any:
    """`ensemble pretrain-base`'s tokenizer: `<|endoftext|>` is bos and eos, `<pad>`, `[TOPIC]`/`[TEXT]`."""
    from ensemble.training.pretrain import train_tokenizer

    return train_tokenizer(texts, vocab_size)


def gemma_tokenizer(texts: list[str] = TEXTS) -> Any:
    """A Gemma tokenizer over single characters (no merges) plus 256 byte-fallback tokens."""
    import string

    from transformers import GemmaTokenizer

    from ensemble.training.dataset import CONDITION_TOKENS

    chars = sorted(set("".join(texts) + string.ascii_letters + string.digits + string.punctuation) - set(" "))
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in ["▁", *chars]:
        if c not in BYTE_FALLBACK:
            vocab.setdefault(c, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True, extra_special_tokens=list(CONDITION_TOKENS))


def tiny_config(arch: str, tokenizer: Any, *, max_positions: int = 256) -> Any:
    import transformers as tf

    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vocab = len(tokenizer)
    # Larger than the default 0.02: peaked next-token distributions, so greedy choices are not near-ties.
    init = 0.1
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=max_positions, initializer_range=init, **ids
        )
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=max_positions,
            initializer_range=init,
            **ids,
        )
    llama_like = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
        "initializer_range": init,
        **ids,
    }
    if arch == "llama":
        return tf.LlamaConfig(vocab_size=vocab, **llama_like)
    if arch == "qwen2":
        return tf.Qwen2Config(vocab_size=vocab, **llama_like)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(
            vocab_size=vocab + 24,
            head_dim=8,
            query_pre_attn_scalar=8,
            sliding_window=SLIDING_WINDOW,
            layer_types=["sliding_attention", "full_attention"],
            **llama_like,
        )
    raise ValueError(arch)


def tiny_model(arch: str, tokenizer: Any, *, seed: int = 0, max_positions: int = 256) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, tokenizer, max_positions=max_positions)).eval()


def save_tiny_base(arch: str, directory: str | Path, texts: list[str] = TEXTS, *, seed: int = 0) -> Path:
    """Model and tokenizer saved as a base model directory (safetensors)."""
    directory = Path(directory)
    tokenizer = tiny_tokenizer(arch, texts)
    tiny_model(arch, tokenizer, seed=seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_lora_expert(model: Any, out: str | Path, seed: int, scale: float = 0.3) -> Path:
    """A random LoRA adapter on `model` (left unchanged) as training sets it up (targets detected per
    architecture), with non-zero B so it changes the outputs."""
    import copy

    import torch

    from ensemble.training.adapters import init_adapter
    from ensemble.training.config import TrainParams

    params = TrainParams.model_validate({"method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    peft_model, _ = init_adapter(copy.deepcopy(model), params)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    return Path(out)


def save_freeze_expert(model: Any, out: str | Path, seed: int, scale: float = 0.1) -> Path:
    """The upper block of `model`, perturbed, saved as a `freeze` expert saves its trained tensors."""
    import torch
    from safetensors.torch import save_file

    from ensemble.training.adapters import find_blocks

    top = {id(p) for p in find_blocks(model)[-1].parameters()}
    torch.manual_seed(seed)
    tensors = {
        n: (p.detach() + scale * torch.randn_like(p)).contiguous() for n, p in model.named_parameters() if id(p) in top
    }
    path = Path(out) / "trained.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
