"""Provenance: for every paragraph of a document, the corpus passages it is closest to.

A paragraph is a BM25 query over the index with its own terms, run twice: restricted to the section expert's
dataset passages (the retriever's `clause_scores` over their ids, so the scores are the index's own) and over
the whole corpus (`search`). Both lists are merged by score, so the top source is the nearest passage of the
whole corpus, and `in_expert_dataset` says whether it is one the section's expert was trained or validated on.
Each source carries the longest run of analyzer terms it shares with the paragraph.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

import regex as re

from ..config.project import ProjectConfig
from ..core.errors import EnsembleError
from ..corpus.clean import clean_text
from ..corpus.load import iter_source_files, read_documents
from ..retrieval.base import Retriever
from ..text.analyzers import analyze_many
from ..training.registry import expert_dir


@dataclass(frozen=True)
class Source:
    passage_id: str
    doc_id: str
    title: str  # the document's title; its id where the corpus has no title
    score: float  # BM25 of the paragraph against the passage, as the index scores it
    shared_run: int  # analyzer terms in the longest run the paragraph and the passage share
    in_expert_dataset: bool  # among the passages the section's expert was trained and validated on


@dataclass(frozen=True)
class ParagraphSources:
    text: str
    sources: list[Source]  # best score first


@dataclass(frozen=True)
class Provenance:
    own_dataset_share: float | None  # paragraphs whose top source is in the expert's dataset; None: no dataset
    paragraphs: list[ParagraphSources]


SOURCES = 3  # passages kept per paragraph from the expert's dataset, and as many from the whole corpus


@dataclass(frozen=True)
class _Match:
    passage_id: str
    doc_id: str
    text: str
    score: float
    in_expert_dataset: bool


def doc_id_of(passage_id: str) -> str:
    """ "<doc id>#<n>" → "<doc id>"."""
    return passage_id.rsplit("#", 1)[0]


def expert_dataset(cfg: ProjectConfig, expert: str | None) -> dict[str, str] | None:
    """passage id → text of the passages an expert was trained and validated on; None for the base, an expert
    never trained, or one whose dataset is gone."""
    if not expert:
        return None
    d = expert_dir(cfg, expert) / "dataset"
    out: dict[str, str] = {}
    for name in ("train.jsonl", "val.jsonl"):
        try:
            lines = (d / name).read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        for line in lines:
            try:
                row = json.loads(line) if line.strip() else None
            except ValueError:
                return None
            if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("text"), str):
                out[row["id"]] = row["text"]
    return out


def longest_shared_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive terms found in both `a` and `b`."""
    if not a or not b:
        return 0
    return SequenceMatcher(None, list(a), list(b), autojunk=False).find_longest_match(0, len(a), 0, len(b)).size


def _matches(retriever: Retriever, paragraph: str, dataset: Mapping[str, str] | None, k: int) -> list[_Match]:
    """The `k` best of the expert's dataset and the `k` best of the whole corpus, best score first."""
    own = dataset or {}
    found: dict[str, _Match] = {}
    if own:
        scores = retriever.clause_scores(list(own), paragraph).get("query", {})
        for pid, score in sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]:
            found[pid] = _Match(pid, doc_id_of(pid), own[pid], score, True)
    for hit in retriever.search(paragraph, k=k):
        found.setdefault(hit.id, _Match(hit.id, hit.doc_id, hit.text, hit.score, hit.id in own))
    return sorted(found.values(), key=lambda m: (-m.score, m.passage_id))


def own_dataset_share(paragraphs: Sequence[ParagraphSources]) -> float | None:
    """Share of the paragraphs with a source whose top source is in the section expert's dataset."""
    sourced = [p for p in paragraphs if p.sources]
    return sum(p.sources[0].in_expert_dataset for p in sourced) / len(sourced) if sourced else None


def section_provenance(
    retriever: Retriever,
    paragraphs: Sequence[str],
    dataset: Mapping[str, str] | None,
    analyzer: str,
    *,
    k: int = SOURCES,
) -> list[ParagraphSources]:
    """Each paragraph with its sources (titles are the document ids: see `with_titles`)."""
    found = [_matches(retriever, p, dataset, k) for p in paragraphs]
    passages = list(dict.fromkeys(m.text for ms in found for m in ms))
    terms = dict(zip(passages, analyze_many(passages, analyzer), strict=True)) if passages else {}
    out = []
    for text, ms, para_terms in zip(paragraphs, found, analyze_many(list(paragraphs), analyzer), strict=True):
        sources = [
            Source(
                passage_id=m.passage_id,
                doc_id=m.doc_id,
                title=m.doc_id,
                score=m.score,
                shared_run=longest_shared_run(para_terms, terms[m.text]),
                in_expert_dataset=m.in_expert_dataset,
            )
            for m in ms
        ]
        out.append(ParagraphSources(text, sources))
    return out


def document_titles(cfg: ProjectConfig, doc_ids: Iterable[str]) -> dict[str, str]:
    """doc id → title for the documents among `doc_ids` that have one (only JSONL documents can); {} where
    the corpus cannot be read."""
    wanted = set(doc_ids)
    ignore: Callable[[str], None] = lambda _: None  # noqa: E731
    try:
        if not wanted or not any(
            s.path.suffix.lower() == ".jsonl" for s in iter_source_files(cfg, skip_bad=True, warn=ignore)
        ):
            return {}
        out: dict[str, str] = {}
        for doc in read_documents(cfg, skip_bad=True, warn=ignore, clean=False):
            if doc.id in wanted:
                wanted.discard(doc.id)
                title = clean_text(doc.title, cfg.clean).strip() if doc.title else ""
                if title:
                    out[doc.id] = " ".join(title.split())
                if not wanted:
                    break
        return out
    except EnsembleError:
        return {}


def with_titles(provenance: Provenance, titles: Mapping[str, str]) -> Provenance:
    return Provenance(
        provenance.own_dataset_share,
        [
            ParagraphSources(p.text, [replace(s, title=titles.get(s.doc_id, s.doc_id)) for s in p.sources])
            for p in provenance.paragraphs
        ],
    )


def document_provenance(
    cfg: ProjectConfig,
    retriever: Retriever,
    sections: Sequence[tuple[str | None, Sequence[str]]],
    *,
    k: int = SOURCES,
) -> list[Provenance]:
    """Per section, given as (expert or None, paragraph texts): its paragraphs' sources, with titles. A section
    without an expert dataset (the base, no outline) has no own-dataset share."""
    out = []
    for expert, paragraphs in sections:
        dataset = expert_dataset(cfg, expert)
        paras = section_provenance(retriever, paragraphs, dataset, cfg.index.analyzer, k=k)
        out.append(Provenance(own_dataset_share(paras) if dataset else None, paras))
    titles = document_titles(cfg, {s.doc_id for p in out for para in p.paragraphs for s in para.sources})
    return [with_titles(p, titles) for p in out]


def overall_share(provenances: Sequence[Provenance | None]) -> float | None:
    """Over every paragraph of the sections that have an own-dataset share."""
    paragraphs = [
        para for p in provenances if p is not None and p.own_dataset_share is not None for para in p.paragraphs
    ]
    return own_dataset_share(paragraphs)


def _inline(text: str) -> str:
    """Text that markdown shows as written on one line."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", " ".join(text.split()))


def footnote(sources: Sequence[Source]) -> str | None:
    """A paragraph's footnote text: each source's title, passage id, score and shared run; None without any."""
    if not sources:
        return None
    return "; ".join(_source_note(s) for s in sources)


def _source_note(s: Source) -> str:
    where = _inline(s.passage_id) if s.title == s.doc_id else f"{_inline(s.title)}, passage {_inline(s.passage_id)}"
    run = f"{s.shared_run} shared term{'' if s.shared_run == 1 else 's'}"
    return f"{where} (BM25 {s.score:.1f}, {run}{', expert dataset' if s.in_expert_dataset else ''})"
