"""Retrieval hits → an expert's dataset: union, de-duplication, a disjoint train/validation split, LM samples.

Pure functions on texts and token ids; the tokenizer is called by the caller.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# Special tokens of the conditional format `[TOPIC] <name> [TEXT] <passage>`; pretrain-base reserves them.
TOPIC_TOKEN = "[TOPIC]"
TEXT_TOKEN = "[TEXT]"
CONDITION_TOKENS = (TOPIC_TOKEN, TEXT_TOKEN)
CONDITION_FORMAT = f"{TOPIC_TOKEN} {{name}} {TEXT_TOKEN} {{text}}"

_SPLIT_SALT = "ensemble-split-v1"
# How passages become training samples; part of an expert's identity, so a change retrains (2: every block opens
# with the base's <bos>).
SAMPLE_FORMAT = 2


@dataclass(frozen=True)
class DataPassage:
    id: str
    text: str
    sha256: str
    score: float | None = None  # best retrieval score over the queries that found it
    queries: tuple[int, ...] = ()  # indices of the queries that found it
    source: str = "retrieval"  # or the extra file it came from


class TooFewPassages(Exception):
    def __init__(self, have: int, need: int) -> None:
        super().__init__(f"{have} passages, at least {need} needed")
        self.have = have
        self.need = need


def text_hash(text: str) -> str:
    """Hash of the text with whitespace normalised, so re-wrapped copies count as duplicates."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def collect(hit_lists: Sequence[Sequence[object]], extra: Sequence[tuple[str, str, str]] = ()) -> list[DataPassage]:
    """Union of every query's hits (objects with .id/.text/.score) and extra (id, text, source) passages.

    Duplicates by id or by normalised text keep the first occurrence's id with the best score and every query.
    Order: best retrieval score first, then the extra passages in the order given.
    """
    by_hash: dict[str, dict] = {}
    seen_ids: dict[str, str] = {}
    for qi, hits in enumerate(hit_lists):
        for h in hits:
            text = h.text.strip()  # type: ignore[attr-defined]
            if not text:
                continue
            hid = h.id  # type: ignore[attr-defined]
            th = seen_ids.get(hid) or text_hash(text)
            seen_ids[hid] = th
            entry = by_hash.get(th)
            score = float(h.score)  # type: ignore[attr-defined]
            if entry is None:
                by_hash[th] = {"id": hid, "text": text, "score": score, "queries": {qi}}
            else:
                entry["score"] = max(entry["score"], score) if entry["score"] is not None else score
                entry["queries"].add(qi)
    ranked = sorted(by_hash.items(), key=lambda kv: -kv[1]["score"])
    out = [DataPassage(e["id"], e["text"], th, e["score"], tuple(sorted(e["queries"]))) for th, e in ranked]
    hashes = set(by_hash)
    for pid, text, source in extra:
        text = text.strip()
        th = text_hash(text)
        if text and th not in hashes:
            hashes.add(th)
            out.append(DataPassage(pid, text, th, None, (), source))
    return out


def file_passages(name: str, text: str, max_chars: int = 1000) -> list[tuple[str, str]]:
    """Split an extra file into passages at blank lines, merging short paragraphs up to `max_chars`."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out: list[str] = []
    for p in paras:
        if out and len(out[-1]) + len(p) + 1 <= max_chars:
            out[-1] = out[-1] + "\n" + p
        else:
            out.append(p)
    return [(f"file:{name}#{i}", p) for i, p in enumerate(out)]


def _unit(h: str) -> float:
    return int(hashlib.sha256(f"{_SPLIT_SALT}:{h}".encode()).hexdigest()[:16], 16) / 2**64


def split_train_val(
    passages: Sequence[DataPassage], val_fraction: float, min_val: int, min_train: int = 1
) -> tuple[list[DataPassage], list[DataPassage]]:
    """Deterministic, disjoint split by passage: each text's hash decides, independent of order and of which
    other passages were retrieved, so a held-out passage stays held out when the dataset grows."""
    need = min_val + min_train
    if len(passages) < need:
        raise TooFewPassages(len(passages), need)
    ranked = sorted(passages, key=lambda p: (_unit(p.sha256), p.sha256))
    n_val = sum(1 for p in ranked if _unit(p.sha256) < val_fraction)
    n_val = min(max(n_val, min_val), len(passages) - min_train)
    val_ids = {p.sha256 for p in ranked[:n_val]}
    train = [p for p in passages if p.sha256 not in val_ids]
    val = [p for p in passages if p.sha256 in val_ids]
    return train, val


@dataclass
class Sample:
    """Token ids with, per position, whether it is in the loss and whether condition dropout may remove it."""

    ids: list[int]
    in_loss: list[bool]
    droppable: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.droppable:
            self.droppable = [False] * len(self.ids)


def make_sequences(
    passages: Sequence[list[int]],
    eos_id: int,
    condition: tuple[int, list[int], int] | None = None,
    *,
    bos_id: int | None = None,
) -> list[Sample]:
    """One sequence per tokenised passage, EOS-terminated. With `condition` = (topic_id, name_ids, text_id)
    each becomes `[TOPIC] name [TEXT] passage EOS`; the condition is out of the loss, and only
    the name is droppable. A `bos_id` other than `eos_id` (Gemma's `<bos>`, Llama's `<s>`) opens each
    sequence, out of the loss: compose and evaluation open every prompt with it, and such bases were
    pretrained on documents that start with it."""
    start = start_ids(bos_id, eos_id)
    out = []
    for ids in passages:
        body = list(ids) + [eos_id]
        if condition is None:
            out.append(Sample(start + body, [False] * len(start) + [True] * len(body)))
            continue
        topic_id, name_ids, text_id = condition
        head = [*start, topic_id, *name_ids, text_id]
        droppable = [False] * len(start) + [False] + [True] * len(name_ids) + [False] + [False] * len(body)
        out.append(Sample(head + body, [False] * len(head) + [True] * len(body), droppable))
    return out


def start_ids(bos_id: int | None, eos_id: int) -> list[int]:
    """The token a base's every document opens with: its `<bos>` where that is not its end-of-text token."""
    return [bos_id] if bos_id is not None and bos_id != eos_id else []


def _chunks(seq: Sample, block_size: int, start: Sequence[int] = ()) -> list[Sample]:
    """`seq` cut into blocks of at most `block_size`; with `start`, a block that does not open with it gets it
    (out of the loss): a base pretrained on documents that start with `<bos>` reads text without it as a
    broken input (Gemma 3: perplexity ~5x), and an adapter trained on such blocks mostly learns to cope."""
    head = list(start)
    out = []
    i = 0
    while i < len(seq.ids):
        if not head or seq.ids[i : i + len(head)] == head:
            n = block_size
            out.append(Sample(seq.ids[i : i + n], seq.in_loss[i : i + n], seq.droppable[i : i + n]))
        else:
            n = block_size - len(head)
            pad = [False] * len(head)
            out.append(Sample(head + seq.ids[i : i + n], pad + seq.in_loss[i : i + n], pad + seq.droppable[i : i + n]))
        i += n
    return out


def pack(seqs: Sequence[Sample], block_size: int, start: Sequence[int] = ()) -> list[Sample]:
    """Concatenate the sequences (EOS-separated), cut into `block_size` blocks, each opening with `start`; the
    last may be short."""
    joined = Sample([], [], [])
    for s in seqs:
        joined.ids += s.ids
        joined.in_loss += s.in_loss
        joined.droppable += s.droppable
    return [c for c in _chunks(joined, block_size, start) if any(c.in_loss)] if joined.ids else []


def per_passage(seqs: Sequence[Sample], block_size: int, start: Sequence[int] = ()) -> list[Sample]:
    """One sample per passage; a passage longer than a block continues in further samples, each opening with
    `start`."""
    return [c for s in seqs for c in _chunks(s, block_size, start) if any(c.in_loss)]


def drop_condition_tokens(seq: Sample, keep_prob: float, rng: random.Random) -> Sample:
    """Remove each droppable token with probability 1 − keep_prob; special and text tokens always stay."""
    if keep_prob >= 1.0 or not any(seq.droppable):
        return seq
    keep = [not d or rng.random() < keep_prob for d in seq.droppable]
    return Sample(
        [t for t, k in zip(seq.ids, keep, strict=True) if k],
        [x for x, k in zip(seq.in_loss, keep, strict=True) if k],
        [x for x, k in zip(seq.droppable, keep, strict=True) if k],
    )


class LMDataset:
    """Causal-LM samples for the HF Trainer; condition dropout is re-drawn per epoch (see `set_epoch`)."""

    def __init__(self, samples: Sequence[Sample], keep_prob: float = 1.0, seed: int = 0) -> None:
        self.samples = list(samples)
        self.keep_prob = keep_prob
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        s = self.samples[i]
        if self.keep_prob < 1.0:
            s = drop_condition_tokens(s, self.keep_prob, random.Random(f"{self.seed}:{self.epoch}:{i}"))
        labels = [t if m else -100 for t, m in zip(s.ids, s.in_loss, strict=True)]
        return {"input_ids": s.ids, "labels": labels}

    @property
    def n_tokens(self) -> int:
        return sum(len(s.ids) for s in self.samples)

    @property
    def n_loss_tokens(self) -> int:
        return sum(sum(s.in_loss) for s in self.samples)
