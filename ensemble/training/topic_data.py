"""One topic's data: its queries' hits, merged with its extra files, split, and written under dataset/; and the
report across topics (hits per query, passages, overlap) that says when a topic's data is too thin or not its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.artifacts import write_json_atomic, write_text_atomic
from ..core.errors import EnsembleError
from .config import TopicsFile, TopicSpec, TrainParams
from .dataset import DataPassage, TooFewPassages, collect, file_passages, split_train_val

MAX_OVERLAP = 0.5  # Jaccard above which two topics' datasets are more shared than their own


@dataclass
class ExpertData:
    train: list[DataPassage]
    val: list[DataPassage]
    hits: int  # retrieval hits before de-duplication
    hits_per_query: list[int] = field(default_factory=list)
    overlap: dict[str, float] = field(default_factory=dict)  # Jaccard with each other topic of the run

    @property
    def sha256(self) -> str:
        """Identity of the dataset: which texts, in which split."""
        h = hashlib.sha256()
        for split, ps in (("train", self.train), ("val", self.val)):
            for p in ps:
                h.update(f"{split}:{p.sha256}\n".encode())
        return h.hexdigest()

    @property
    def passages(self) -> int:
        """Passages after de-duplication (retrieved and from files)."""
        return len(self.train) + len(self.val)

    @property
    def texts(self) -> frozenset[str]:
        """The passages by text hash: the same text under two ids is one passage."""
        return frozenset(p.sha256 for p in (*self.train, *self.val))

    def report(self) -> dict[str, Any]:
        return {"hits_per_query": list(self.hits_per_query), "passages": self.passages, "overlap": dict(self.overlap)}


class DataWarning(UserWarning):
    """A topic's dataset is thin or shared with another topic (library calls without a progress object)."""


def data_warning(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


@dataclass(frozen=True)
class DataProblem:
    topic: str  # the topic whose queries should change
    message: str


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
    return ExpertData(train, val, sum(len(h) for h in hit_lists), [len(h) for h in hit_lists])


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def with_overlaps(data: Mapping[str, ExpertData]) -> dict[str, ExpertData]:
    """Each topic's data with its overlap (Jaccard of passage sets) with every other topic."""
    texts = {name: d.texts for name, d in data.items()}
    return {
        name: dataclasses.replace(
            d, overlap={other: round(jaccard(texts[name], t), 4) for other, t in texts.items() if other != name}
        )
        for name, d in data.items()
    }


def report_line(name: str, data: ExpertData) -> str:
    """`family: 62 hits (12 1 12 1 12 12 12 per query), 32 passages after de-duplication; overlap (Jaccard)
    friends 0.31, village 0.37` on one line."""
    per_query = " ".join(str(n) for n in data.hits_per_query)
    line = f"{name}: {data.hits} hits ({per_query} per query), {data.passages} passages after de-duplication"
    if data.overlap:
        line += "; overlap (Jaccard) " + ", ".join(f"{o} {j:.2f}" for o, j in data.overlap.items())
    return line


def data_problems(data: Mapping[str, ExpertData], params: Mapping[str, TrainParams]) -> list[DataProblem]:
    """Topics with fewer than `min_passages` passages, and pairs of topics whose passages overlap by more than
    MAX_OVERLAP (Jaccard), in topic order."""
    problems = []
    names = list(data)
    for i, name in enumerate(names):
        d, least = data[name], params[name].min_passages
        if d.passages < least:
            problems.append(
                DataProblem(
                    name,
                    f"topic '{name}' has only {d.passages} passages (min_passages: {least}); index more corpus "
                    "on the topic, add or broaden its queries, or raise top_k",
                )
            )
        for other in names[i + 1 :]:
            j = d.overlap.get(other, 0.0)
            if j > MAX_OVERLAP:
                shared = len(d.texts & data[other].texts)
                problems.append(
                    DataProblem(
                        name,
                        f"topics '{name}' and '{other}' share {shared} passages (Jaccard {j:.2f} > {MAX_OVERLAP}; "
                        f"{shared}/{d.passages} of '{name}', {shared}/{data[other].passages} of '{other}'): make "
                        "their queries more distinct, index more corpus, or lower top_k",
                    )
                )
    return problems


def review_datasets(
    topics: TopicsFile,
    data: Mapping[str, ExpertData],
    params: Mapping[str, TrainParams],
    *,
    strict: bool,
    log: Callable[[str], None],
    warn: Callable[[str], None],
) -> dict[str, ExpertData]:
    """Add the overlaps, log one report line per topic and warn about each problem; with `strict` the first
    problem is an error pointing at the topic's queries in topics.yaml, raised before anything is logged."""
    data = with_overlaps(data)
    problems = data_problems(data, params)
    if strict and problems:
        raise _strict_error(topics, problems[0], len(problems))
    for name, d in data.items():
        log(report_line(name, d))
    for problem in problems:
        warn(f"warning: {problem.message}")
    return data


def _strict_error(topics: TopicsFile, problem: DataProblem, count: int) -> EnsembleError:
    more = f"; {count - 1} more problem{'s' if count > 2 else ''}" if count > 1 else ""
    return topics.error(f"{problem.message} (--strict{more})", *topics.topic_loc(problem.topic), "queries")


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
