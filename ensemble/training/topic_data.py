"""One topic's data: its queries' hits, merged with its extra files, split, and written under dataset/."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.artifacts import write_json_atomic, write_text_atomic
from .config import TopicsFile, TopicSpec, TrainParams
from .dataset import DataPassage, TooFewPassages, collect, file_passages, split_train_val


@dataclass
class ExpertData:
    train: list[DataPassage]
    val: list[DataPassage]
    hits: int  # retrieval hits before de-duplication

    @property
    def sha256(self) -> str:
        """Identity of the dataset: which texts, in which split."""
        h = hashlib.sha256()
        for split, ps in (("train", self.train), ("val", self.val)):
            for p in ps:
                h.update(f"{split}:{p.sha256}\n".encode())
        return h.hexdigest()


def retrieve_topic(retriever: Any, topics: TopicsFile, topic: TopicSpec, params: TrainParams) -> ExpertData:
    """Run every query (with the theme), add the extra files, de-duplicate and split; errors point into
    topics.yaml when a topic finds too little."""
    loc = topics.topic_loc(topic.name)
    hit_lists = [retriever.search(q, theme=topics.theme, k=params.top_k) for q in topic.queries]
    extra: list[tuple[str, str, str]] = []
    for j, f in enumerate(topic.files):
        p = topics.resolve(f)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            reason = "not found" if isinstance(e, FileNotFoundError) else f"unreadable ({e})"
            raise topics.error(f"extra file {p} is {reason}", *loc, "files", j) from None
        extra += [(pid, t, f) for pid, t in file_passages(Path(f).name, text)]
    passages = collect(hit_lists, extra)
    if not passages:
        theme = f" with theme '{topics.theme}'" if topics.theme else ""
        raise topics.error(
            f"topic '{topic.name}' retrieved no passages for any of its {len(topic.queries)} queries{theme}; "
            "rephrase the queries, check the theme, or run `ensemble build-index` on a corpus that covers it",
            *loc,
            "queries",
        )
    try:
        train, val = split_train_val(passages, params.val_fraction, params.min_val_passages)
    except TooFewPassages as e:
        raise topics.error(
            f"topic '{topic.name}' retrieved only {e.have} distinct passages but needs at least {e.need} "
            f"({params.min_val_passages} held out for validation, the rest for training); add queries, "
            "raise top_k, add files, or lower min_val_passages",
            *loc,
            "queries",
        ) from None
    return ExpertData(train, val, sum(len(h) for h in hit_lists))


def write_dataset(d: Path, topic: TopicSpec, data: ExpertData) -> None:
    """Dataset manifest (ids, scores, hashes, sizes) and the texts."""
    rows = []
    for split, ps in (("train", data.train), ("val", data.val)):
        for p in ps:
            rows.append(
                {
                    "id": p.id,
                    "split": split,
                    "score": p.score,
                    "queries": [topic.queries[i] for i in p.queries],
                    "source": p.source,
                    "sha256": p.sha256,
                    "chars": len(p.text),
                }
            )
    for split, ps in (("train", data.train), ("val", data.val)):
        lines = [json.dumps({"id": p.id, "text": p.text}, ensure_ascii=False) for p in ps]
        write_text_atomic(d / f"{split}.jsonl", "\n".join(lines) + "\n")
    write_json_atomic(d / "passages.json", {"topic": topic.name, "sha256": data.sha256, "passages": rows})
