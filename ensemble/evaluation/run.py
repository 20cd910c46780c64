"""`evaluate`: a composed markdown document → per-section and overall quality measures.

What each measure needs, and what happens without it (the measure is None and a note says why, so a document
can always be checked for repetition, even before anything is built):
- length, distinct-n, rep-n: the document alone;
- copy rate: the index (`ensemble build-index`). Each sentence of the document is a BM25 query, and the
  document's n-grams are compared with every passage those queries return: a copied n-gram shares n terms with
  its source, which therefore ranks at the top for the sentence it sits in. Only the retriever contract is
  used, so it works the same on the embedded and the Elasticsearch backend, for any corpus size. An n-gram
  that straddles two corpus passages is in neither, so a copy is found up to its passage boundaries;
- provenance (each paragraph's nearest corpus passages, and per section the share of paragraphs whose nearest
  passage is in the section expert's dataset): the index; the share also needs the outline;
- section relevance: trained experts (`ensemble train-experts`);
- perplexity: the base model; under each section's own expert: the outline and that expert.
A damaged artifact (corrupt manifest, unreadable adapter) is still an error: skipping would hide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..composition.provenance import Provenance, overall_share
from ..config.project import ProjectConfig
from ..core.errors import ArtifactError, BackendError, ConfigError, EnsembleError
from ..core.progress import NullProgress, Progress
from ..retrieval.relevance import RELEVANCE_TOP, ExpertPassages
from ..training.runtime import PRECISIONS, Precision
from . import metrics as M
from .markdown import MarkdownDocument, parse_markdown
from .report import OverallReport, Ranked, Report, SectionReport

COPY_NGRAM = 8
COPY_CANDIDATES = 10  # passages retrieved per sentence of the document
QUERY_CHARS = 300  # a longer "sentence" (degenerate text without punctuation) is queried in pieces
EXCERPT_CHARS = 120
PRECISION = "fp32"  # perplexity's number format: fp32 compares across machines


@dataclass(frozen=True)
class _Section:
    heading: str
    text: str
    paragraphs: int
    sentences: list[str]
    terms: list[str]
    offsets: list[tuple[int, int]]  # character span of each term in `text`
    expert: str | None


def read_document(path: Path) -> MarkdownDocument:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EnsembleError("file not found; give the markdown file `ensemble compose` wrote", path=path) from None
    except IsADirectoryError:
        raise EnsembleError("is a directory; give a markdown file", path=path) from None
    except OSError as e:
        raise EnsembleError(f"cannot read the file ({e.strerror or e})", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EnsembleError("not UTF-8 text; give the markdown file `ensemble compose` wrote", path=path) from None
    return parse_markdown(text, source=str(path))


def _section_experts(doc: MarkdownDocument, outline_path: Path | None) -> tuple[list[str | None], list[str]]:
    """Each document section's expert from the outline: by position when the document has as many sections as
    the outline (headings may have been edited by hand), else by heading."""
    if outline_path is None:
        return [None] * len(doc.sections), []
    from ..composition.config import load_outline

    outline = load_outline(outline_path)
    by_heading: dict[str, list[str]] = {}
    for s in outline.sections:
        by_heading.setdefault(s.heading, []).append(s.expert)
    same_count = len(outline.sections) == len(doc.sections)
    out: list[str | None] = []
    notes: list[str] = []
    for i, sec in enumerate(doc.sections):
        if same_count:
            out.append(outline.sections[i].expert)
        elif len(by_heading.get(sec.heading, [])) == 1:
            out.append(by_heading[sec.heading][0])
        else:
            out.append(None)
            notes.append(f"section {i + 1} '{sec.heading}' is not in the outline; its expert is unknown")
    return out, notes


def _prepare(doc: MarkdownDocument, experts: list[str | None], analyzer: str) -> list[_Section]:
    from ..text.analyzers import analyze_tokens
    from ..text.sentences import split_many

    texts = [s.text for s in doc.sections]
    sentences = split_many(texts) if any(texts) else [[] for _ in texts]
    out = []
    for sec, text, sents, expert in zip(doc.sections, texts, sentences, experts, strict=True):
        toks = analyze_tokens(text, analyzer) if text else []
        out.append(
            _Section(
                heading=sec.heading,
                text=text,
                paragraphs=len(sec.paragraphs),
                sentences=[M.normalize_sentence(s) for s in sents if s.strip()],
                terms=[t.term for t in toks],
                offsets=[(t.start, t.end) for t in toks],
                expert=expert,
            )
        )
    return out


# --- copy rate ------------------------------------------------------------------------------------


def _queries(sentences: Sequence[str]) -> list[str]:
    out = []
    for s in sentences:
        while len(s) > QUERY_CHARS:
            cut = s.rfind(" ", QUERY_CHARS // 2, QUERY_CHARS)
            cut = cut if cut > 0 else QUERY_CHARS
            out.append(s[:cut])
            s = s[cut:].strip()
        if s:
            out.append(s)
    return out


def _corpus_ngrams(
    cfg: ProjectConfig, sections: Sequence[_Section], n: int, k: int, progress: Progress
) -> tuple[set[M.Ngram], int]:
    """N-grams of every passage that a sentence of the document retrieves, and how many passages that was."""
    from ..retrieval.base import open_retriever
    from ..text.analyzers import analyze_many

    queries = list(dict.fromkeys(q for s in sections for q in _queries(s.sentences)))
    retriever = open_retriever(cfg)
    passages: dict[str, str] = {}
    progress.start("copy rate", total=len(queries))
    try:
        for q in queries:
            for hit in retriever.search(q, k=k):
                passages.setdefault(hit.id, hit.text)
            progress.advance("copy rate", 1)
    finally:
        retriever.close()
    progress.end("copy rate", None)
    terms = analyze_many(list(passages.values()), cfg.index.analyzer) if passages else []
    return M.ngram_set(terms, n), len(passages)


def _excerpt(sec: _Section, span: tuple[int, int]) -> tuple[int, str]:
    start, end = sec.offsets[span[0]][0], sec.offsets[span[1] - 1][1]
    text = " ".join(sec.text[start:end].split())
    return end - start, text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


# --- provenance -----------------------------------------------------------------------------------


def _provenance(
    cfg: ProjectConfig, doc: MarkdownDocument, experts: Sequence[str | None], notes: list[str], progress: Progress
) -> list[Provenance | None]:
    from ..composition.provenance import document_provenance
    from ..retrieval.base import open_retriever

    sections = [(e if e != "base" else None, list(s.paragraphs)) for s, e in zip(doc.sections, experts, strict=True)]
    progress.start("provenance", total=None)
    try:
        retriever = open_retriever(cfg)
        try:
            return list(document_provenance(cfg, retriever, sections))
        finally:
            retriever.close()
    except (ArtifactError, BackendError) as e:
        notes.append(f"provenance skipped: {e.message}")
        return [None] * len(sections)
    finally:
        progress.end("provenance", None)


# --- relevance ------------------------------------------------------------------------------------


def _expert_collection(cfg: ProjectConfig, notes: list[str]) -> ExpertPassages | None:
    """One BM25 collection of all trained experts' passages."""
    from ..text.analyzers import analyze_many
    from ..training.registry import list_experts, load_expert_passages

    manifests = list_experts(cfg)
    if not manifests:
        notes.append("section relevance skipped: no trained experts; run `ensemble train-experts topics.yaml`")
        return None
    return ExpertPassages(
        {m.name: load_expert_passages(cfg, m.name) for m in manifests},
        lambda texts: analyze_many(texts, cfg.index.analyzer),
        k1=cfg.index.k1,
        b=cfg.index.b,
    )


# --- the whole evaluation -------------------------------------------------------------------------


def _ppl_of(nlls: Sequence[Any]) -> float | None:
    from .perplexity import Nll

    total = sum((x for x in nlls if x is not None), Nll(0.0, 0))
    return total.perplexity


def _precision(cfg: ProjectConfig, precision: str) -> Precision:
    """`precision` on this machine and base, or an error naming the option."""
    from ..training.base import inference_precision

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}", key="--precision")
    try:
        return inference_precision(cfg, precision)
    except ConfigError as e:
        raise ConfigError(e.message, key="--precision") from None


def evaluate(
    cfg: ProjectConfig,
    document_path: str | Path,
    *,
    outline_path: str | Path | None = None,
    perplexity: bool = True,
    copy_ngram: int = COPY_NGRAM,
    copy_candidates: int = COPY_CANDIDATES,
    relevance_top: int = RELEVANCE_TOP,
    stride: int | None = None,
    precision: str = PRECISION,
    progress: Progress | None = None,
) -> Report:
    """Measure a composed document (see the module doc for what each measure needs). `precision` (auto, fp32,
    bf16, fp16) is the number format perplexity is scored in."""
    if copy_ngram < 1 or copy_candidates < 1 or relevance_top < 1:
        raise EnsembleError("copy_ngram, copy_candidates and relevance_top must be positive")
    scoring = _precision(cfg, precision) if perplexity else None
    progress = progress or NullProgress()
    path = Path(document_path)
    doc = read_document(path)
    experts, notes = _section_experts(doc, Path(outline_path) if outline_path is not None else None)
    analyzer = cfg.index.analyzer
    sections = _prepare(doc, experts, analyzer)

    # copy rate
    reference: set[M.Ngram] | None = None
    candidates = 0
    try:
        reference, candidates = _corpus_ngrams(cfg, sections, copy_ngram, copy_candidates, progress)
    except (ArtifactError, BackendError) as e:
        notes.append(f"copy rate skipped: {e.message}")
    copies = [M.copy_stats(s.terms, reference, copy_ngram) if reference is not None else None for s in sections]

    provenance = _provenance(cfg, doc, experts, notes, progress)

    # relevance
    collection = _expert_collection(cfg, notes)
    names = collection.names if collection is not None else []
    rankings: list[list[tuple[str, float]] | None] = [
        collection.rank(s.terms, top=relevance_top) if collection is not None else None for s in sections
    ]

    # perplexity
    base_nll: list[Any] = [None] * len(sections)
    expert_nll: list[Any] = [None] * len(sections)
    if perplexity:
        from .perplexity import score_texts

        scored_experts = [e if e and e in names else None for e in experts]
        for e in sorted({e for e in experts if e and e != "base" and e not in names}):
            notes.append(f"perplexity under expert '{e}' skipped: it is not trained")
        try:
            scored = score_texts(
                cfg, [s.text for s in sections], scored_experts, stride=stride, precision=scoring, progress=progress
            )
            base_nll, expert_nll = list(scored.base), list(scored.expert)
            notes.extend(scored.notes)
        except ArtifactError as e:
            if e.key != "base_model":  # no base model is a skip; a broken adapter is an error
                raise
            notes.append(f"perplexity skipped: {e.message}")

    reports = []
    for i, sec in enumerate(sections):
        cp = copies[i]
        length, excerpt = _excerpt(sec, cp.span) if cp and cp.span else (0 if cp else None, None)
        ranking = rankings[i]
        own_rank = None
        if ranking is not None and sec.expert in names:
            own_rank = [e for e, _ in ranking].index(sec.expert) + 1
        reports.append(
            SectionReport(
                number=i + 1,
                heading=sec.heading,
                expert=sec.expert,
                chars=len(sec.text),
                sentences=len(sec.sentences),
                paragraphs=sec.paragraphs,
                tokens=len(sec.terms),
                distinct_1=M.distinct_n(sec.terms, 1),
                distinct_2=M.distinct_n(sec.terms, 2),
                rep_2=M.rep_n(sec.terms, 2),
                rep_4=M.rep_n(sec.terms, 4),
                repeated_sentences=M.repeated_share(sec.sentences),
                copy_rate=cp.rate if cp else None,
                copied_ngrams=cp.copied if cp else None,
                ngrams=max(0, len(sec.terms) - copy_ngram + 1),
                longest_copy=cp.longest if cp else None,
                longest_copy_chars=length,
                longest_copy_text=excerpt,
                expert_ranking=[Ranked(e, s) for e, s in ranking] if ranking is not None else None,
                best_expert=ranking[0][0] if ranking and ranking[0][1] > 0 else None,  # no shared term: none
                own_expert_rank=own_rank,
                perplexity=base_nll[i].perplexity if base_nll[i] else None,
                expert_perplexity=expert_nll[i].perplexity if expert_nll[i] else None,
                perplexity_tokens=base_nll[i].tokens if base_nll[i] else None,
                provenance=provenance[i],
            )
        )
    overall = replace(
        _overall(sections, reports, copies, base_nll, expert_nll), own_dataset_share=overall_share(provenance)
    )
    settings = {
        "unit": f"{analyzer} analyzer terms",
        "copy_ngram": copy_ngram,
        "copy_candidates_per_sentence": copy_candidates,
        "copy_passages_compared": candidates if reference is not None else None,
        "relevance": f"BM25 (k1={cfg.index.k1}, b={cfg.index.b}) over every expert's dataset passages; "
        f"score = mean of an expert's top {relevance_top}",
        "experts": names,
        "perplexity_stride": stride,
        "perplexity_precision": scoring.name if scoring else None,
    }
    return Report(
        document=str(path),
        title=doc.title,
        outline=str(outline_path) if outline_path is not None else None,
        overall=overall,
        sections=reports,
        notes=notes,
        settings=settings,
    )


def _overall(
    sections: Sequence[_Section],
    reports: Sequence[SectionReport],
    copies: Sequence[M.CopyStats | None],
    base_nll: Sequence[Any],
    expert_nll: Sequence[Any],
) -> OverallReport:
    # N-grams never cross a section boundary: the sections are written independently.
    all_terms = [t for s in sections for t in s.terms]
    grams = [g for s in sections for g in M.ngrams(s.terms, 2)]
    grams4 = [g for s in sections for g in M.ngrams(s.terms, 4)]
    uni = len(set(all_terms))
    measured = [c for c in copies if c is not None]
    n_grams = sum(c.ngrams for c in measured)
    longest = max(reports, key=lambda r: r.longest_copy or 0) if measured else None
    ranked = [r for r in reports if r.own_expert_rank is not None]
    return OverallReport(
        sections=len(reports),
        chars=sum(r.chars for r in reports),
        sentences=sum(r.sentences for r in reports),
        paragraphs=sum(r.paragraphs for r in reports),
        tokens=len(all_terms),
        distinct_1=uni / len(all_terms) if all_terms else None,
        distinct_2=len(set(grams)) / len(all_terms) if grams else None,
        rep_2=1 - len(set(grams)) / len(grams) if grams else None,
        rep_4=1 - len(set(grams4)) / len(grams4) if grams4 else None,
        repeated_sentences=M.repeated_share([x for s in sections for x in s.sentences]),
        copy_rate=(sum(c.copied for c in measured) / n_grams if n_grams else None) if measured else None,
        longest_copy=longest.longest_copy if longest else None,
        longest_copy_chars=longest.longest_copy_chars if longest else None,
        longest_copy_text=longest.longest_copy_text if longest else None,
        own_expert_first=sum(r.own_expert_rank == 1 for r in ranked) if ranked else None,
        sections_with_expert=len(ranked) if ranked else None,
        mean_own_expert_rank=sum(r.own_expert_rank or 0 for r in ranked) / len(ranked) if ranked else None,
        perplexity=_ppl_of(base_nll),
        expert_perplexity=_ppl_of(expert_nll),
    )
