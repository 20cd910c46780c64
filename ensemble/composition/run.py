"""`compose`: outline → experts checked → one host → all sections chained together → one markdown document.

Every section's progress is saved under `<work_dir>/compose/sections/` after each round (atomic writes),
keyed by the section's own inputs: position, heading, expert (and its manifest), prompt, resolved settings,
base and seed. An interrupted run resumes where it stopped and gives the same document; editing one section
regenerates that section only and reuses the others byte for byte. Each row samples from its own seeded
stream, so a section's text depends on its own inputs and, through the repeat guard, on nothing but the
sentences of the other sections it must not repeat.

`sections` (1-based numbers) regenerates those sections with `seed` and keeps every other section as the last
document had it, whatever seed wrote it; without `sections`, a cached section is reused only when it was
written with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..config.project import ProjectConfig
from ..core.artifacts import read_json, sha256_file, write_json_atomic
from ..core.errors import ArtifactError, BackendError, ConfigError, CorpusError, EnsembleError
from ..core.locks import work_lock
from ..core.progress import NullProgress, Progress
from ..retrieval.relevance import Analyze, ExpertPassages
from .chain import ChainSection, SectionState, TopicMargin, run_chain
from .config import BASE_EXPERT, OutlineFile, load_outline
from .guard import CopyGuard
from .provenance import Provenance, footnote
from .render import paragraph_texts, render
from .vocabulary import corpus_signature, corpus_vocabulary, vocabulary_key

if TYPE_CHECKING:
    from ..training.runtime import Precision

ProvenanceMode = Literal["off", "report", "footnotes"]

# 3: int8 output layer, packed LoRA products; 4: aligned padding; 5: row attention, packed float32 output layer;
# 6: each row's own KV positions in float32
CACHE_FORMAT = "ensemble-compose-section/6"


@dataclass
class SectionResult:
    number: int  # 1-based, as in `--sections`
    heading: str
    expert: str
    paragraphs: list[list[str]]
    stats: dict[str, Any]


@dataclass
class ComposedDocument:
    title: str
    sections: list[SectionResult]
    markdown: str
    seed: int
    outline: str
    cache_dir: str
    seconds: float
    generated: list[int] = field(default_factory=list)  # section numbers written by this run
    provenance: list[Provenance] | None = None  # per section; None when off or without an index
    provenance_seconds: float = 0.0  # part of `seconds`
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        provenance = self.provenance or [None] * len(self.sections)
        return {
            "title": self.title,
            "outline": self.outline,
            "seed": self.seed,
            "cache_dir": self.cache_dir,
            "seconds": round(self.seconds, 2),
            "provenance_seconds": round(self.provenance_seconds, 2),
            "generated": self.generated,
            "chars": sum(s.stats["chars"] for s in self.sections),
            "sections": [
                {
                    "number": s.number,
                    "heading": s.heading,
                    "expert": s.expert,
                    **s.stats,
                    "provenance": asdict(p) if p is not None else None,
                }
                for s, p in zip(self.sections, provenance, strict=True)
            ],
            "notes": self.notes,
        }


@dataclass
class _Expert:
    method: str  # "base" | "lora" | "freeze"
    adapter: Path | None = None
    identity: str = ""
    prompt_prefix: str = ""
    manifest: Any = None


def parse_sections(spec: str | Sequence[int] | None, count: int) -> list[int] | None:
    """`"2,4"` or `[2, 4]` → sorted unique 1-based section numbers, each checked against the outline."""
    if spec is None:
        return None
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise EnsembleError(
                f"'{spec}' is not a list of section numbers; write e.g. --sections 2,4", key="--sections"
            ) from None
    else:
        numbers = list(spec)
    if not numbers:
        raise EnsembleError("no section numbers given; write e.g. --sections 2,4", key="--sections")
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        raise EnsembleError(
            f"section {bad[0]} does not exist; the outline has {count} section(s): pass numbers from 1 to {count}",
            key="--sections",
        )
    return sorted(set(numbers))


def _experts(cfg: ProjectConfig, outline: OutlineFile) -> tuple[dict[str, _Expert], str]:
    """Every expert the outline names, checked: trained, complete, and trained on this base."""
    from ..training.base import base_fingerprint, check_base
    from ..training.registry import expert_dir, list_experts, read_expert

    check_base(cfg)
    fingerprint = base_fingerprint(cfg)
    out: dict[str, _Expert] = {BASE_EXPERT: _Expert("base")}
    for i, sec in enumerate(outline.sections):
        name = sec.expert
        if name in out:
            continue
        if not (expert_dir(cfg, name) / "manifest.json").is_file():
            trained = [m.name for m in list_experts(cfg)]
            have = f"trained experts: {', '.join(trained)}" if trained else "no expert is trained yet"
            raise outline.error(
                f"expert '{name}' has no trained adapter ({have}); train it with "
                f"`ensemble train-experts topics.yaml --only {name}` or use '{BASE_EXPERT}'",
                "sections",
                i,
                "expert",
            )
        manifest = read_expert(cfg, name)
        if manifest.base.fingerprint != fingerprint:
            raise outline.error(
                f"expert '{name}' was trained on another base model than the one ensemble.yaml names now; "
                f"retrain it with `ensemble train-experts topics.yaml --only {name} --force`",
                "sections",
                i,
                "expert",
            )
        adapter = manifest.adapter_path
        needed = adapter / ("adapter_config.json" if manifest.method == "lora" else "trained.safetensors")
        if not needed.is_file():
            raise outline.error(
                f"expert '{name}' is incomplete ({needed} is missing); retrain it with "
                f"`ensemble train-experts topics.yaml --only {name} --force`",
                "sections",
                i,
                "expert",
            )
        damaged = _unreadable_weights(adapter)
        if damaged:
            raise outline.error(
                f"expert '{name}' has a damaged weight file ({damaged}); retrain it with "
                f"`ensemble train-experts topics.yaml --only {name} --force`",
                "sections",
                i,
                "expert",
            )
        out[name] = _Expert(
            manifest.method,
            adapter,
            sha256_file(Path(manifest.path or adapter.parent) / "manifest.json"),
            _prompt_prefix(manifest),
            manifest,
        )
    return out, fingerprint


def _precision(cfg: ProjectConfig, outline: OutlineFile) -> Precision:
    """The outline's precision on this machine and base; one it cannot take is an error naming the outline."""
    from ..training.base import inference_precision

    try:
        return inference_precision(cfg, outline.precision)
    except ConfigError as e:
        raise outline.error(e.message, "precision") from None


def _unimproved(experts: dict[str, _Expert]) -> list[str]:
    """A warning line per expert that never beat the base on its own validation passages."""
    out = []
    for name, e in experts.items():
        m = e.manifest
        if m is not None and m.improved is False:
            out.append(
                f"warning: expert '{name}' did not improve on the base model (validation perplexity "
                f"{m.val_perplexity_before:.2f} → {m.val_perplexity_after:.2f}); its sections read like the base's. "
                f"Retrain it with other settings: `ensemble train-experts topics.yaml --only {name} --force`"
            )
    return out


def _unreadable_weights(adapter: Path) -> str | None:
    """The first safetensors file under `adapter` whose header or size is wrong (checked before the base loads,
    so a damaged adapter is a clear error instead of a failure halfway through loading)."""
    from safetensors import safe_open

    for path in sorted(adapter.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    f.get_slice(key).get_shape()
        except Exception as e:  # safetensors raises its own error types for every kind of damage
            return f"{path.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def _prompt_prefix(manifest: Any) -> str:
    """Experts trained on `[TOPIC] <name> [TEXT] <passage>` samples are prompted the same way."""
    cond = manifest.condition or {}
    if not cond.get("enabled"):
        return ""
    fmt = str(cond.get("format") or "[TOPIC] {name} [TEXT] {text}")
    return fmt.split("{text}")[0].format(name=manifest.name).rstrip()


def _corpus_signature(cfg: ProjectConfig, outline: OutlineFile) -> dict[str, Any] | None:
    """With `vocabulary: corpus` the corpus shapes the text: what it depends on (see vocabulary.py). None: the
    whole vocabulary is used (`vocabulary: all`, or ensemble.yaml names no corpus)."""
    if outline.vocabulary != "corpus" or not cfg.corpus:
        return None
    try:
        return corpus_signature(cfg)
    except CorpusError as e:
        raise outline.error(
            f"vocabulary: corpus reads the corpus, and {e.message}; restore it or set vocabulary: all", "vocabulary"
        ) from None


def _section_key(
    outline: OutlineFile,
    i: int,
    expert: _Expert,
    base: str,
    corpus: dict[str, Any] | None,
    steering: dict[str, str] | None,
) -> str:
    """The section's own inputs but the seed: what its cache entries (one per seed) share. `steering`: the
    experts topic steering compares against (name: manifest digest), where it applies to this section."""
    sec = outline.sections[i]
    steered = steering is not None and sec.expert in steering and outline.params(i).topic_weight > 0
    payload = {
        "format": CACHE_FORMAT,
        "position": i,
        "heading": sec.heading,
        "expert": sec.expert,
        "prompt": sec.prompt,
        "params": outline.params(i).model_dump(mode="json"),
        "precision": outline.precision,
        "vocabulary": outline.vocabulary,
        "corpus": corpus,
        "base": base,
        "expert_manifest": expert.identity,
        "topic_experts": steering if steered else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _entry_path(store: Path, key: str, seed: int) -> Path:
    return store / f"section-{key[:32]}-seed{seed}.json"


def _latest_path(store: Path, key: str) -> Path:
    """Which seed's entry the last document used for this section."""
    return store / f"latest-{key[:32]}.json"


def _load_cached(path: Path, key: str, seed: int) -> SectionState | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ArtifactError:
        return None  # a damaged cache entry is regenerated, never trusted
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key:
        return None
    if data.get("seed") != seed:
        return None
    try:
        return SectionState.from_dict(data["state"])
    except (KeyError, TypeError, ValueError):
        return None


def _latest_seed(store: Path, key: str) -> int | None:
    try:
        data = read_json(_latest_path(store, key))
    except ArtifactError:
        return None
    seed = data.get("seed") if isinstance(data, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _reusable(store: Path, key: str, seed: int, keep_latest: bool) -> tuple[SectionState, int] | None:
    """A finished entry to reuse: with `keep_latest`, the one the last document used (else this seed's)."""
    seeds = [s for s in (_latest_seed(store, key) if keep_latest else None, seed) if s is not None]
    for s in dict.fromkeys(seeds):
        state = _load_cached(_entry_path(store, key, s), key, s)
        if state is not None and state.done:
            return state, s
    return None


def compose(
    cfg: ProjectConfig,
    outline_path: str | Path,
    *,
    seed: int = 0,
    sections: str | Sequence[int] | None = None,
    progress: Progress | None = None,
    max_batch: int | None = None,
    provenance: ProvenanceMode = "off",
) -> ComposedDocument:
    """Write the outline's document; `max_batch` caps the rows of one forward pass (memory vs speed).
    `provenance`: each paragraph's nearest corpus passages; "report": in the report only, where the index is
    built (else a note says why not); "footnotes": in the markdown too, and a missing index is an error raised
    before anything is generated."""
    progress = progress or NullProgress()
    t0 = time.monotonic()
    outline_path = Path(outline_path)
    outline = load_outline(outline_path)
    selected = parse_sections(sections, len(outline.sections))
    experts, base_fp = _experts(cfg, outline)
    corpus = _corpus_signature(cfg, outline)
    host_for = partial(
        load_host,
        cfg,
        # a precision this machine or base cannot take is refused before anything is written
        precision=_precision(cfg, outline),
        int8_head=None if outline.precision == "auto" else False,
        max_batch=max_batch,
        vocabulary=vocabulary_key(corpus, base_fp) if corpus is not None else None,
    )
    t_open = time.monotonic()
    retriever, notes = _provenance_retriever(cfg, provenance)
    t_open = time.monotonic() - t_open
    try:
        doc = _compose(cfg, outline, outline_path, seed, selected, experts, (base_fp, corpus), progress, host_for)
        if retriever is not None:
            t1 = time.monotonic()
            doc.provenance = _sources(cfg, retriever, doc.sections, provenance, notes)
            doc.provenance_seconds = t_open + time.monotonic() - t1
    finally:
        if retriever is not None:
            retriever.close()
    if doc.provenance is not None and provenance == "footnotes":
        notes_of = [[footnote(p.sources) for p in s.paragraphs] for s in doc.provenance]
        doc.markdown = render(doc.title, [(r.heading, r.paragraphs) for r in doc.sections], notes_of)
    doc.notes = notes
    doc.seconds = time.monotonic() - t0
    return doc


def _provenance_retriever(cfg: ProjectConfig, mode: ProvenanceMode) -> tuple[Any, list[str]]:
    if mode == "off":
        return None, []
    from ..retrieval.base import open_retriever

    try:
        return open_retriever(cfg), []
    except (ArtifactError, BackendError) as e:
        if mode == "footnotes":
            raise
        return None, [f"provenance skipped: {e.message}"]


def _compose(
    cfg: ProjectConfig,
    outline: OutlineFile,
    outline_path: Path,
    seed: int,
    selected: list[int] | None,
    experts: dict[str, _Expert],
    inputs: tuple[str, dict[str, Any] | None],
    progress: Progress,
    host_for: Callable[[dict[str, _Expert]], Any],
) -> ComposedDocument:
    """`inputs`: the base's fingerprint and the corpus signature the vocabulary comes from (None: all of it)."""
    for warning in _unimproved(experts):
        progress.log(warning)
    store = cfg.work_path / "compose" / "sections"
    n = len(outline.sections)
    steering = _steering(experts)
    keys = [_section_key(outline, i, experts[outline.sections[i].expert], *inputs, steering) for i in range(n)]
    paths = [_entry_path(store, k, seed) for k in keys]

    with work_lock(cfg.work_path / "compose" / "compose.lock"):
        states: dict[int, SectionState] = {}
        seeds: dict[int, int] = {}
        todo: list[int] = []
        resume: dict[int, SectionState] = {}
        for i in range(n):
            if selected and (i + 1) in selected:
                todo.append(i)
                continue
            reused = _reusable(store, keys[i], seed, keep_latest=selected is not None)
            if reused is not None:
                states[i], seeds[i] = reused
                continue
            partial = _load_cached(paths[i], keys[i], seed)
            if partial is not None:
                resume[i] = partial
            todo.append(i)
        for i in sorted(states):
            sec = outline.sections[i]
            progress.log(f"{i + 1}. {sec.heading}: reused ({states[i].chars} chars, seed {seeds[i]})")
        if todo:
            written = [s for i in sorted(states) for s in states[i].sentences]
            states.update(
                _generate(cfg, outline, todo, resume, experts, keys, paths, seed, progress, host_for, written)
            )
            seeds.update(dict.fromkeys(todo, seed))
        for i in range(n):
            if _latest_seed(store, keys[i]) != seeds[i]:
                write_json_atomic(_latest_path(store, keys[i]), {"seed": seeds[i]})

    results = []
    for i, sec in enumerate(outline.sections):
        st = states[i]
        results.append(
            SectionResult(i + 1, sec.heading, sec.expert, st.paragraphs, _stats(st, outline, i, seeds[i], i in todo))
        )
    markdown = render(outline.title, [(r.heading, r.paragraphs) for r in results])
    return ComposedDocument(
        title=outline.title,
        sections=results,
        markdown=markdown,
        seed=seed,
        outline=str(outline_path),
        cache_dir=str(store),
        seconds=0.0,
        generated=[i + 1 for i in todo],
    )


def _sources(
    cfg: ProjectConfig, retriever: Any, results: Sequence[SectionResult], mode: ProvenanceMode, notes: list[str]
) -> list[Provenance] | None:
    """Every section's provenance; a backend failing halfway is an error only where footnotes were asked for."""
    from .provenance import document_provenance

    sections = [(r.expert if r.expert != BASE_EXPERT else None, paragraph_texts(r.paragraphs)) for r in results]
    try:
        return document_provenance(cfg, retriever, sections)
    except BackendError as e:
        if mode == "footnotes":
            raise
        notes.append(f"provenance skipped: {e.message}")
        return None


def _stats(st: SectionState, outline: OutlineFile, i: int, seed: int, generated: bool) -> dict[str, Any]:
    p = outline.params(i)
    return {
        "chars": st.chars,
        "target_chars": p.target_chars,
        "sentences": len(st.sentences),
        "paragraphs": len(st.paragraphs),
        "steps": st.step,
        "tokens": st.tokens,
        "rejected": dict(st.rejected),
        "retry_rounds": st.retry_rounds,
        "moved_on": st.moved_on,
        "capped": st.capped,
        "seconds": round(st.seconds, 2),
        "seed": seed,
        "cached": not generated,
    }


def _generate(
    cfg: ProjectConfig,
    outline: OutlineFile,
    todo: list[int],
    resume: dict[int, SectionState],
    experts: dict[str, _Expert],
    keys: list[str],
    paths: list[Path],
    seed: int,
    progress: Progress,
    host_for: Callable[[dict[str, _Expert]], Any],
    written: list[str],
) -> dict[int, SectionState]:
    from ..text.sentences import split_many

    names = sorted({outline.sections[i].expert for i in todo})
    progress.log(f"loading the base model and {len(names) - (BASE_EXPERT in names)} expert(s)")
    host = host_for({name: experts[name] for name in names})
    if host.vocabulary is not None:
        allowed, vocab = host.vocabulary
        progress.log(f"writing with the corpus's vocabulary: {allowed:,} of the base's {vocab:,} tokens")
    chain_sections = [
        ChainSection(
            index=i,
            heading=outline.sections[i].heading,
            expert=outline.sections[i].expert,
            prompt=outline.sections[i].prompt,
            params=outline.params(i),
            prompt_prefix=experts[outline.sections[i].expert].prompt_prefix,
        )
        for i in todo
    ]
    passages = _passages(cfg)
    copy_guards = _copy_guards(chain_sections, passages)
    topics = _topic_margins(cfg, chain_sections, passages, _steering(experts))
    tasks = {i: f"{i + 1}. {outline.sections[i].heading}" for i in todo}
    shown: dict[int, int] = {}
    for sec in chain_sections:
        progress.start(tasks[sec.index], total=sec.params.target_chars)

    def save(i: int, state: SectionState) -> None:
        write_json_atomic(
            paths[i],
            {
                "format": CACHE_FORMAT,
                "key": keys[i],
                "seed": seed,
                "number": i + 1,
                "heading": outline.sections[i].heading,
                "state": state.to_dict(),
            },
        )

    ended: set[int] = set()

    def report(i: int, st: SectionState) -> None:
        now = min(st.chars, outline.params(i).target_chars)
        progress.advance(tasks[i], now - shown.get(i, 0), info=f"{st.chars} chars")
        shown[i] = now
        if st.done:
            ended.add(i)
            note = " (step cap reached)" if st.capped else ""
            progress.end(tasks[i], f"{tasks[i]}: {st.chars} chars, {len(st.sentences)} sentences{note}")

    def on_round(states: dict[int, SectionState], advanced: list[int]) -> None:
        for i in advanced:
            save(i, states[i])  # saved before anything is reported, so a failing reporter loses nothing
        for i in advanced:
            report(i, states[i])

    states = run_chain(
        chain_sections,
        host.generate,
        split_many,
        seed=seed,
        copy_guards=copy_guards,
        topics=topics,
        states=resume,
        on_round=on_round,
        written=written,
    )
    for i in todo:
        if i not in ended:  # done before any round: its prompt alone reached the target
            save(i, states[i])
            report(i, states[i])
    return states


def _steering(experts: dict[str, _Expert]) -> dict[str, str] | None:
    """The experts topic steering compares a section's candidates against (name: manifest digest): the
    outline's trained experts, where there are at least two."""
    trained = {name: e.identity for name, e in experts.items() if name != BASE_EXPERT}
    return trained if len(trained) >= 2 else None


def _passages(cfg: ProjectConfig) -> Callable[[str], list[str]]:
    """Each expert's dataset passages, read once on first use."""
    from ..training.registry import load_expert_passages

    read: dict[str, list[str]] = {}

    def of(name: str) -> list[str]:
        if name not in read:
            read[name] = load_expert_passages(cfg, name)
        return read[name]

    return of


def _copy_guards(sections: Iterable[ChainSection], passages: Callable[[str], list[str]]) -> dict[int, CopyGuard]:
    built: dict[tuple[Any, ...], CopyGuard] = {}
    out: dict[int, CopyGuard] = {}
    for sec in sections:
        if sec.expert == BASE_EXPERT:
            continue
        p = sec.params
        key = (sec.expert, p.copy_ngram, p.copy_unit, p.copy_threshold)
        if key not in built:
            built[key] = CopyGuard(passages(sec.expert), n=p.copy_ngram, unit=p.copy_unit, threshold=p.copy_threshold)
        out[sec.index] = built[key]
    return out


def _topic_margins(
    cfg: ProjectConfig,
    sections: Sequence[ChainSection],
    passages: Callable[[str], list[str]],
    steering: dict[str, str] | None,
) -> dict[int, TopicMargin]:
    """Per steered section (topic_weight > 0, its own trained expert, at least two experts to tell apart): how
    far its own expert leads the others for a text, by BM25 over all their passages."""
    steered = [s for s in sections if s.params.topic_weight > 0 and steering is not None and s.expert in steering]
    if not steered:
        return {}
    from ..text.analyzers import analyze_many

    def analyze(texts: list[str]) -> list[list[str]]:
        return analyze_many(texts, cfg.index.analyzer)

    collection = ExpertPassages({name: passages(name) for name in steering}, analyze, k1=cfg.index.k1, b=cfg.index.b)
    return {s.index: partial(_margin, collection, analyze, s.expert) for s in steered}


def _margin(collection: ExpertPassages, analyze: Analyze, expert: str, text: str) -> float:
    return collection.margin(analyze([text])[0], expert)


def load_host(
    cfg: ProjectConfig,
    experts: dict[str, _Expert],
    *,
    precision: Precision,
    int8_head: bool | None = None,
    max_batch: int | None = None,
    vocabulary: str | None = None,
) -> Any:
    """The base once, on the device and in the dtype of `precision` (see `_precision`), with every needed expert
    attached; with `vocabulary` (a `vocabulary_key`), limited to the corpus's vocabulary. `int8_head`: the output
    layer in int8 where the host can (a CPU in float32) and it pays (None, as `precision: auto` has it), or
    never (False: `fp32`)."""
    from ..training.base import load_base_model
    from .host import ExpertHost

    model, tokenizer = load_base_model(cfg, device=precision.device, dtype=precision.dtype)
    lora = {n: e.adapter for n, e in experts.items() if e.method == "lora" and e.adapter is not None}
    freeze = {n: e.adapter / "trained.safetensors" for n, e in experts.items() if e.method == "freeze" and e.adapter}
    host = ExpertHost(model, tokenizer, lora=lora, freeze=freeze, max_batch=max_batch, int8_head=int8_head)
    if vocabulary is not None:
        ids = corpus_vocabulary(cfg, tokenizer, host.token_texts(), vocabulary)
        if ids is not None:
            host.restrict_vocabulary(ids)
    return host
