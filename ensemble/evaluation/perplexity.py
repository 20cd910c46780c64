"""Perplexity of texts under the base model and under the expert that wrote them.

Sliding windows with a stride (the usual recipe for texts longer than the model's context): every token is
scored exactly once, with up to `max_length − stride` earlier tokens of context. Each window starts with the
same prefix the experts were trained with: end-of-text (passages were packed after it) and, for an expert
trained with condition tokens, `[TOPIC] <name> [TEXT]`. The text's own tokens are identical under the base and
under the expert, so the two perplexities compare like for like.

Runs on the GPU when there is one, else the CPU, in the precision asked (`evaluate`'s default is fp32, so
figures compare across machines); no gradients, one window at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config.project import ProjectConfig
from ..core.errors import ArtifactError
from ..core.progress import NullProgress, Progress
from ..training.runtime import Precision

MAX_WINDOW = 1024  # beyond this a CPU spends its time on attention for little gain in context


@dataclass(frozen=True)
class Nll:
    total: float  # summed negative log-likelihood, in nats
    tokens: int

    @property
    def perplexity(self) -> float | None:
        return math.exp(min(self.total / self.tokens, 50.0)) if self.tokens else None

    def __add__(self, other: Nll) -> Nll:
        return Nll(self.total + other.total, self.tokens + other.tokens)


def context_length(model: Any) -> int:
    c = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        v = getattr(c, key, None)
        if isinstance(v, int) and v > 0:
            return min(v, MAX_WINDOW)
    return MAX_WINDOW


def text_nll(
    model: Any, ids: Sequence[int], *, prefix: Sequence[int] = (), max_length: int, stride: int | None = None
) -> Nll:
    """Summed NLL of `ids` (each token once), in windows of at most `max_length` tokens, prefix included."""
    import torch

    room = max_length - len(prefix)
    if room < 2:
        raise ValueError(f"a window of {max_length} tokens cannot hold a {len(prefix)}-token prefix and text")
    stride = max(1, min(stride or room // 2, room))
    device = next(model.parameters()).device
    total, counted = 0.0, 0
    prev_end = 0
    begin = 0
    while prev_end < len(ids):
        end = min(begin + room, len(ids))
        window = list(prefix) + list(ids[begin:end])
        new = end - prev_end  # the last `new` tokens of the window are scored
        x = torch.tensor([window], device=device)
        with torch.inference_mode():
            logits = model(input_ids=x).logits[0, :-1].float()
        targets = x[0, 1:]
        logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        # A window without prefix cannot score its first token (nothing predicts it): skip it once.
        scored = logp[-new:] if new <= logp.numel() else logp
        total -= float(scored.sum())
        counted += scored.numel()
        prev_end = end
        begin += stride
    return Nll(total, counted)


@dataclass(frozen=True)
class Scored:
    base: list[Nll]
    expert: list[Nll | None]  # None: no expert for this text, or it could not be used
    notes: list[str]


def _start_ids(tokenizer: Any) -> list[int]:
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [start] if start is not None else []


def _condition_ids(tokenizer: Any, manifest: Any) -> list[int]:
    """`[TOPIC] <name> [TEXT]`, tokenised as in the training datasets, for an expert trained with it."""
    cond = manifest.condition or {}
    if not cond.get("enabled"):
        return []
    from ..training.dataset import CONDITION_TOKENS

    vocab = tokenizer.get_vocab()
    if not all(t in vocab for t in CONDITION_TOKENS):
        return []
    name_ids = tokenizer(" " + manifest.name + " ", add_special_tokens=False)["input_ids"]
    return [vocab[CONDITION_TOKENS[0]], *name_ids, vocab[CONDITION_TOKENS[1]]]


def score_texts(
    cfg: ProjectConfig,
    texts: Sequence[str],
    experts: Sequence[str | None],
    *,
    stride: int | None = None,
    precision: Precision | None = None,
    progress: Progress | None = None,
) -> Scored:
    """NLL of each text under the base and under `experts[i]` (a trained expert's name; None: base only).

    The base is loaded once; each needed expert is put over it once (freeze experts swapped in and back out,
    LoRA experts as PEFT adapters last). An expert that is not trained, or was trained on another base, gets a
    note and no score. A missing base model raises ArtifactError. `precision`: device and dtype (default: fp32
    on this machine's GPU, else its CPU)."""
    import torch

    from ..training.base import base_fingerprint, load_base_model
    from ..training.registry import attach_expert, load_trained_tensors, read_expert
    from ..training.runtime import resolve_precision

    progress = progress or NullProgress()
    precision = precision or resolve_precision("fp32", training=False)
    model, tokenizer = load_base_model(cfg, device=precision.device, dtype=precision.dtype)
    model.eval()
    max_length = context_length(model)
    start = _start_ids(tokenizer)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    needed = sorted({e for e in experts if e})
    total = len(texts) + sum(1 for e in experts if e)
    progress.start("perplexity", total=total)

    def nll(m: Any, i: int, prefix: list[int]) -> Nll:
        out = text_nll(m, ids[i], prefix=prefix, max_length=max_length, stride=stride)
        progress.advance("perplexity", 1)
        return out

    base = [nll(model, i, start) for i in range(len(texts))]
    expert_scores: list[Nll | None] = [None] * len(texts)
    notes: list[str] = []
    manifests: dict[str, Any] = {}
    fingerprint = base_fingerprint(cfg) if needed else ""
    for name in needed:
        try:
            m = read_expert(cfg, name)
        except ArtifactError as e:
            notes.append(f"perplexity under expert '{name}' skipped: {e.message}")
            continue
        if m.base.fingerprint != fingerprint:
            notes.append(
                f"perplexity under expert '{name}' skipped: it was trained on another base model than "
                "ensemble.yaml names now"
            )
            continue
        manifests[name] = m

    def run_expert(m: Any, name: str) -> None:
        prefix = start + _condition_ids(tokenizer, manifests[name])
        for i, e in enumerate(experts):
            if e == name:
                expert_scores[i] = nll(m, i, prefix)

    # freeze experts overwrite base tensors: swap each in, score, and put the base's own back.
    for name in [n for n in manifests if manifests[n].method == "freeze"]:
        tensors = load_trained_tensors(manifests[name])
        params = dict(model.named_parameters())
        with torch.no_grad():
            originals = {k: params[k].detach().clone() for k in tensors if k in params}
        try:
            attach_expert(model, manifests[name])
            run_expert(model, name)
        finally:
            with torch.no_grad():
                for k, v in originals.items():
                    params[k].copy_(v)

    # LoRA last: wrapping the base in PEFT changes what `model` computes from then on.
    peft_model: Any = model
    for name in [n for n in manifests if manifests[n].method == "lora"]:
        try:
            peft_model = attach_expert(peft_model, manifests[name])
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"cannot load the adapter of expert '{name}': {first}; retrain it") from None
        peft_model.set_adapter(name)
        peft_model.eval()
        run_expert(peft_model, name)
    progress.end("perplexity", None)
    return Scored(base, expert_scores, notes)
