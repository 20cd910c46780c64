"""Decoding settings compared by the evaluation metrics, on the example project, same experts, same seeds.

    python benchmarks/quality.py [--workdir DIR] [--preset tiny] [--seeds 0,1] [--target-chars 600]
                                 [--configs recipe,defaults,...] [--topics family,nature] [--json out.json]
                                 [--base MODEL_DIR] [--corpus PATH] [--topics-file FILE] [--train KEY=VALUE ...]

Builds (or reuses, in --workdir) the `ensemble init` example: index, pretrain-base model, one expert per
topic; then composes the same outline once per decoding configuration and seed, evaluates every document with
`ensemble.evaluate`, and prints one row per configuration (means over seeds):

- recipe: the original recipe's decoding: repetition_penalty 2.0 on every token (particles included),
  top-k 30, top-p 0.95, 2-sentence chaining, one sample per step, no guards, the whole vocabulary;
- recipe-models: the same decoding run the recipe's way, each expert its own full model generating alone at
  batch 1 with transformers' `generate` (compose's chain around it): what the recipe's writer waited for;
- defaults: this project's compose defaults (see `GenerationParams`; the outline's `vocabulary: corpus`);
- the alternatives listed in CONFIGS, each changing one thing.

Options for another base, corpus and topics:

- --base DIR: a pretrained causal LM (a transformers directory, or a hub id already cached) instead of the
  pretrain-base model: the project is made by `init_project(dest, base_model=DIR)` (`ensemble init
  --base-model`), so ensemble.yaml names it and topics.yaml gets the pretrained-base training defaults
  (learning rate 1e-3, 3 epochs, top_k 50, micro-batch 1 x 8, gradient checkpointing, block size); no
  pretrain-base is run. Mind the base's licence (nothing of it is written into this repository). With
  --corpus too, block_size is measured again on that corpus (init measured the example's).
- --corpus PATH: the project's `corpus:` is this file or directory instead of the example corpus (a topics file
  may name the index analyzer for it: `analyzer: english`).
- --topics-file FILE: its `theme` and `topics` replace topics.yaml's (the `defaults:` that init wrote stay);
  its optional `outline:` (expert, heading, prompt per section) and `title` give the composed outline.
  benchmarks/koconovel_topics.yaml is one for KoCoNovel (/work/shared/data/koconovel/corpus.jsonl, CC BY-SA
  4.0, not in this repository).
- --train KEY=VALUE (repeatable): override one training default (values parsed as YAML), e.g.
  `--train top_k=15 --train epochs=2 --train block_size=256` for a CPU-sized run.

Columns: the document-level measures of `ensemble evaluate` (distinct-2, rep-n and copy rate over analyzer
terms; own 1st = share of sections whose own expert's data matches them best; perplexities token-weighted),
then the composer's own counts: sentences the repeat/copy guards rejected, sections stopped by the step cap
before reaching their length, and seconds spent composing.

Before that table it prints one row per expert, from its manifest: validation perplexity under the base →
the best kept (and every validation), best epoch, whether patience stopped it early, whether it improved on the
base, and its data report (passages, largest Jaccard overlap with another topic, hits per query); and at the
end the seconds each stage took (prepare = index + base + experts, then each configuration).

"No guards" means the repeat and copy guards accept every sentence; when `GenerationParams` has no switch for
that, this script turns them off by patching the guard classes for that configuration only. Contrastive search
is not offered: compose samples with its own per-row sampler, which has no degeneration penalty.

Sizes are flags because a CPU run is slow: the `test` preset and --target-chars 200 take a few minutes, the
`tiny` preset with six sections of 600 characters and two seeds about half an hour on two cores. Gemma 3 270M
(--base) on KoCoNovel with benchmarks/koconovel_topics.yaml and `--train top_k=15 --train epochs=2 --train
block_size=256 --train grad_accum=4 --train gradient_checkpointing=false`: about 10 minutes per expert on one
thread (22 optimizer steps of 4 × 256 tokens), then the compositions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ensemble.composition.config import GenerationParams
from ensemble.composition.run import compose
from ensemble.config import load_project
from ensemble.evaluation import evaluate
from ensemble.examples import init_project
from ensemble.examples.pretrained import corpus_block_size
from ensemble.retrieval.build import build_index
from ensemble.training.experts import train_experts
from ensemble.training.pretrain import pretrain_base
from ensemble.training.registry import list_experts

# Settings of the whole outline rather than of its sections' `defaults`.
OUTLINE_KEYS = ("vocabulary", "precision")

# The original recipe's decoding.
RECIPE = {
    "repetition_penalty": 2.0,
    "penalty_exempt_particles": False,
    "no_repeat_ngram_size": 0,
    "top_k": 30,
    "top_p": 0.95,
    "temperature": 1.0,
    "context_sentences": 2,
    "candidates": 1,
    "vocabulary": "all",
    "topic_weight": 0.0,
}
# name -> (generation settings over the defaults, guards on?)
CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    "recipe": (RECIPE, False),
    "recipe-models": (RECIPE, False),  # run by RecipeModels instead of compose's host
    "defaults": ({}, True),
    "defaults-fp32": ({"precision": "fp32"}, True),  # a float32 output layer instead of int8 on a CPU
    "topic-steering-0": ({"topic_weight": 0.0}, True),
    "topic-steering-1": ({"topic_weight": 1.0}, True),
    "topic-steering-3": ({"topic_weight": 3.0}, True),
    "topic-steering-5": ({"topic_weight": 5.0}, True),
    "defaults-all-vocabulary": ({"vocabulary": "all"}, True),
    "defaults-all-vocabulary-fp32": ({"vocabulary": "all", "precision": "fp32"}, True),
    "no-repeat-4": (
        {"repetition_penalty": 1.0, "no_repeat_ngram_size": 4, "candidates": 1},
        False,
    ),
    "penalty-2-exempt": (
        {
            "repetition_penalty": 2.0,
            "penalty_exempt_particles": True,
            "no_repeat_ngram_size": 0,
            "candidates": 1,
        },
        False,
    ),
    "defaults-1-candidate": ({"candidates": 1}, True),
    "defaults-2-candidates": ({"candidates": 2}, True),
    "defaults-no-guards": ({}, False),
    "greedy-no-repeat-4": (
        {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 4, "candidates": 1},
        True,
    ),
}

# Used when the example project ships no topics.yaml / outline.yaml of its own.
TOPICS = {
    "family": (
        "가족",
        ["가족 저녁 식탁", "할머니 할아버지", "형제 자매"],
        "우리 가족은 저녁마다 식탁에 둘러앉는다.",
    ),
    "friends": (
        "친구와 우정",
        ["친구 우정", "학교 친구", "편지 여행"],
        "오랜 친구와 나는 학교 앞에서 다시 만났다.",
    ),
    "village": (
        "마을과 이웃",
        ["마을 이웃", "골목 시장", "마을 축제 공동체"],
        "우리 마을 골목에는 오래된 가게가 많다.",
    ),
    "nature": ("자연과 계절", ["산 바다", "계절 봄 가을", "나무 정원"], "봄이 오면 우리는 함께 산에 오른다."),
    "work": (
        "일터와 동료",
        ["동료 협동", "공장 일터", "프로젝트 팀"],
        "아침 일찍 동료들과 함께 공장 문을 열었다.",
    ),
    "table": (
        "음식과 명절",
        ["김장 명절", "떡국 송편", "밥상 음식"],
        "명절 아침이면 온 가족이 부엌에 모인다.",
    ),
}
TRAIN_DEFAULTS = {
    "top_k": 100,
    "epochs": 2,
    "micro_batch_size": 4,
    "grad_accum": 1,
    "block_size": 128,
    "warmup_steps": 5,
    "gradient_checkpointing": False,
}
COLUMNS = [
    ("chars", "chars", "{:.0f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
    ("rep_2", "rep-2", "{:.3f}"),
    ("rep_4", "rep-4", "{:.3f}"),
    ("repeated_sentences", "rep. sent.", "{:.3f}"),
    ("copy_rate", "copy", "{:.3f}"),
    ("longest_copy_chars", "longest copy", "{:.0f}"),
    ("own_first", "own 1st", "{:.2f}"),
    ("perplexity", "ppl base", "{:.1f}"),
    ("expert_perplexity", "ppl expert", "{:.1f}"),
    ("rejected", "guard rejects", "{:.1f}"),
    ("capped", "capped", "{:.1f}"),
    ("seconds", "compose s", "{:.0f}"),
]


class LineProgress:
    """Training progress as timestamped lines on stdout (a benchmark log is read with tail, not a terminal)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.done: dict[str, int] = {}
        self.total: dict[str, int | None] = {}

    def _say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.0f} s] {text}", flush=True)

    def start(self, task: str, total: int | None = None) -> None:
        self.done[task], self.total[task] = 0, total
        self._say(f"{task}: start" + (f" ({total})" if total else ""))

    def advance(self, task: str, n: int = 1, info: str | None = None) -> None:
        self.done[task] = self.done.get(task, 0) + n
        self._say(f"{task}: {self.done[task]}/{self.total.get(task) or '?'}" + (f" {info}" if info else ""))

    def end(self, task: str, summary: str | None = None) -> None:
        self._say(f"{task}: done" + (f" ({summary})" if summary else ""))

    def log(self, message: str) -> None:
        self._say(message)


@contextlib.contextmanager
def guards(enabled: bool) -> Iterator[dict[str, Any]]:
    """Settings that turn the guards off (if compose has a switch), else patch them off for the duration."""
    if enabled:
        yield {}
        return
    if "guards" in GenerationParams.model_fields:
        yield {"guards": False}
        return
    import re

    from ensemble.composition import chain, guard

    saved = guard.RepeatGuard.rejects, guard.CopyGuard.rejects, chain._MARKUP
    guard.RepeatGuard.rejects = lambda self, sentence: False  # type: ignore[method-assign]
    guard.CopyGuard.rejects = lambda self, sentence: False  # type: ignore[method-assign]
    chain._MARKUP = re.compile(r"(?!)")  # matches nothing: the markup guard off too
    try:
        yield {}
    finally:
        guard.RepeatGuard.rejects, guard.CopyGuard.rejects, chain._MARKUP = saved  # type: ignore[method-assign]


def set_corpus(config: Path, corpus: Path) -> None:
    """ensemble.yaml with `corpus:` pointing at this one file or directory (absolute: paths are file-relative)."""
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    if doc.get("corpus") == [str(corpus)]:
        return
    lines, out, skipping = config.read_text(encoding="utf-8").splitlines(keepends=True), [], False
    for line in lines:
        if line.startswith("corpus:"):
            out.append(f"corpus:\n  - {json.dumps(str(corpus.resolve()), ensure_ascii=False)}\n")
            skipping = True
            continue
        if skipping and (line.startswith(" ") or line.startswith("-")):
            continue
        skipping = False
        out.append(line)
    config.write_text("".join(out), encoding="utf-8")


def set_analyzer(config: Path, analyzer: str) -> None:
    """ensemble.yaml with `index.analyzer` set (a topics file for an English or Russian corpus names its own)."""
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(  analyzer: )\S+", lambda m: m.group(1) + analyzer, text, count=1)
    config.write_text(text, encoding="utf-8")


def prepare(
    root: Path,
    preset: str,
    topics: list[str] | None,
    train_over: dict[str, Any],
    *,
    base: str | None = None,
    corpus: Path | None = None,
    topics_file: dict[str, Any] | None = None,
) -> tuple[Any, Path, list]:
    """The example project with index, base and experts (each step skipped when already done)."""
    if not (root / "ensemble.yaml").is_file():
        init_project(root, base_model=base)
    if corpus is not None:
        set_corpus(root / "ensemble.yaml", corpus)
    if topics_file is not None and topics_file.get("analyzer"):
        set_analyzer(root / "ensemble.yaml", topics_file["analyzer"])
    cfg = load_project(root / "ensemble.yaml")
    t = time.perf_counter()
    build_index(cfg)
    print(f"index: {time.perf_counter() - t:.0f} s")
    if base:
        print(f"base: {base} (pretrained, no pretrain-base)")
    else:
        t = time.perf_counter()
        pretrain_base(cfg, preset=preset)
        print(f"base ({preset}): {time.perf_counter() - t:.0f} s")
    shipped = root / "topics.yaml"
    doc = yaml.safe_load(shipped.read_text(encoding="utf-8")) if shipped.is_file() else None
    if doc is None:
        doc = {
            "theme": "함께",
            "defaults": dict(TRAIN_DEFAULTS),
            "topics": [{"name": n, "title": v[0], "queries": v[1]} for n, v in TOPICS.items()],
        }
    if topics_file is not None:
        doc["theme"] = topics_file["theme"]
        doc["topics"] = topics_file["topics"]
    if base and corpus is not None:
        block, how = corpus_block_size(cfg, base)  # init measured the example corpus; measure this one
        print(f"block_size for this corpus: {block} ({how})" + (" — overridden" if "block_size" in train_over else ""))
        doc.setdefault("defaults", {})["block_size"] = block
    doc.setdefault("defaults", {}).update(train_over)
    print("training defaults: " + json.dumps(doc["defaults"], ensure_ascii=False, default=str))
    bench_topics = root / "bench-topics.yaml"
    bench_topics.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    t = time.perf_counter()
    experts = train_experts(cfg, bench_topics, only=topics, progress=LineProgress())
    print(f"experts ({', '.join(m.name for m in experts)}): {time.perf_counter() - t:.0f} s")
    return cfg, root, experts


def expert_report(cfg: Any, names: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """Per expert: validation perplexity base -> best, best epoch, early stop, improved, and its data report."""
    rows = []
    for m in list_experts(cfg):
        if m.name not in names:
            continue
        data = m.data or {}
        rows.append(
            {
                "name": m.name,
                "val_ppl_before": m.val_perplexity_before,
                "val_ppl_best": m.val_perplexity_after,
                "val_ppl_by_epoch": m.val_perplexity_by_epoch,
                "best_epoch": m.best_epoch,
                "stopped_early": m.stopped_early,
                "improved": m.improved,
                "epochs": m.epochs,
                "steps": m.steps,
                "train_seconds": m.train_seconds,
                "passages": data.get("passages"),
                "overlap": data.get("overlap"),
                "hits_per_query": data.get("hits_per_query"),
            }
        )
    lines = [
        "| expert | val ppl base → best | by epoch | best epoch | stopped early | improved | passages "
        "| max overlap (Jaccard) | hits per query | train s |",
        "|---|---|---|---:|---|---|---:|---|---|---:|",
    ]
    for r in rows:
        overlap = r["overlap"] or {}
        worst = max(overlap.items(), key=lambda kv: kv[1]) if overlap else None
        hits = r["hits_per_query"]
        hits_s = " ".join(str(v) for v in (hits.values() if isinstance(hits, dict) else hits or [])) or "–"
        by_epoch = ", ".join(f"{v:.1f}" for v in r["val_ppl_by_epoch"]) or "–"
        lines.append(
            f"| {r['name']} | {r['val_ppl_before']:.1f} → {r['val_ppl_best']:.1f} | {by_epoch} "
            f"| {r['best_epoch'] if r['best_epoch'] is not None else '–'} | {r['stopped_early']} | {r['improved']} "
            f"| {r['passages'] if r['passages'] is not None else '–'} "
            f"| {f'{worst[1]:.2f} ({worst[0]})' if worst else '–'} | {hits_s} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines), rows


def sections_for(root: Path, names: list[str], topics_file: dict[str, Any] | None = None) -> list[dict[str, str]]:
    if topics_file is not None and topics_file.get("outline"):
        return [
            {"heading": s["heading"], "expert": s["expert"], "prompt": s["prompt"]}
            for s in topics_file["outline"]
            if s["expert"] in names
        ]
    shipped = root / "outline.yaml"
    if shipped.is_file():
        doc = yaml.safe_load(shipped.read_text(encoding="utf-8"))
        secs = [
            {"heading": s["heading"], "expert": s["expert"], "prompt": s["prompt"]}
            for s in doc["sections"]
            if s["expert"] in names
        ]
        if secs:
            return secs
    return [{"heading": TOPICS[n][0], "expert": n, "prompt": TOPICS[n][2]} for n in names if n in TOPICS]


class RecipeModels:
    """The recipe's way of running its experts, in place of compose's host: each expert its own full model (the
    base with its LoRA adapter merged in), every continuation generated alone, at batch 1, by transformers'
    `generate` with the request's sampling (its repetition penalty over every id, prompt included, as the recipe
    had it). The chain around it is compose's, so both ways write the same outline and are measured alike."""

    vocabulary = None

    def __init__(self, cfg: Any, experts: dict[str, Any], *, precision: Any, **_: Any) -> None:
        from peft import PeftModel

        from ensemble.training.base import load_base_model

        self.models: dict[str, Any] = {}
        for name, expert in experts.items():
            model, self.tok = load_base_model(cfg, device=precision.device, dtype=precision.dtype)
            if expert.method == "lora":
                model = PeftModel.from_pretrained(model, str(expert.adapter)).merge_and_unload()
            elif expert.method != "base":
                raise SystemExit(f"recipe-models runs LoRA experts only; '{name}' is a {expert.method} expert")
            self.models[name] = model.eval()

    def generate(self, requests: Any) -> list[Any]:
        return [self._one(r) for r in requests]

    def _one(self, request: Any) -> Any:
        import torch

        from ensemble.composition.host import generation

        tok, s = self.tok, request.sampling
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ids = torch.tensor([[start, *tok(request.prefix + request.prompt, add_special_tokens=False)["input_ids"]]])
        torch.manual_seed(request.seed)
        with torch.inference_mode():
            out = self.models[request.expert].generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=s.temperature > 0,
                temperature=s.temperature or None,
                top_k=s.top_k,
                top_p=s.top_p,
                repetition_penalty=s.repetition_penalty,
                no_repeat_ngram_size=s.no_repeat_ngram_size,
                max_new_tokens=s.max_new_tokens,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, ids.shape[1] :].tolist()
        logps = [torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(out.logits, new, strict=False)]
        return generation(tok, new, logps)


@contextlib.contextmanager
def host_for(name: str) -> Iterator[None]:
    """Within this block compose runs the experts as configuration `name` says: RecipeModels for
    recipe-models, its own host otherwise."""
    if name != "recipe-models":
        yield
        return
    from ensemble.composition import run

    saved = run.load_host
    run.load_host = RecipeModels  # type: ignore[assignment]
    try:
        yield
    finally:
        run.load_host = saved  # type: ignore[assignment]


def run_config(
    cfg: Any, root: Path, name: str, sections: list[dict[str, str]], seeds: list[int], target: int, title: str = "함께"
) -> dict[str, float]:
    settings, guarded = CONFIGS[name]
    top = {k: v for k, v in settings.items() if k in OUTLINE_KEYS}
    settings = {k: v for k, v in settings.items() if k not in OUTLINE_KEYS}
    rows: list[dict[str, float]] = []
    with guards(guarded) as extra, host_for(name):
        outline = {
            "title": title,
            **top,
            "defaults": {"target_chars": target, **settings, **extra},
            "sections": sections,
        }
        path = root / f"bench-{name}.yaml"
        path.write_text(yaml.safe_dump(outline, allow_unicode=True, sort_keys=False), encoding="utf-8")
        for seed in seeds:
            shutil.rmtree(cfg.work_path / "compose", ignore_errors=True)  # measure generation, not the cache
            doc = compose(cfg, path, seed=seed)
            essay = root / f"{path.stem}-seed{seed}.md"
            essay.write_text(doc.markdown, encoding="utf-8")
            o = evaluate(cfg, essay, outline_path=path).overall
            rows.append(
                {
                    "chars": o.chars,
                    "distinct_2": o.distinct_2,
                    "rep_2": o.rep_2,
                    "rep_4": o.rep_4,
                    "repeated_sentences": o.repeated_sentences,
                    "copy_rate": o.copy_rate,
                    "longest_copy_chars": o.longest_copy_chars,
                    "own_first": (o.own_expert_first or 0) / (o.sections_with_expert or 1),
                    "perplexity": o.perplexity,
                    "expert_perplexity": o.expert_perplexity,
                    "rejected": sum(
                        n for sec in doc.sections for k, n in sec.stats["rejected"].items() if k != "incomplete"
                    ),
                    "capped": sum(bool(sec.stats["capped"]) for sec in doc.sections),
                    "seconds": doc.seconds,
                }
            )
            print(f"  {name} seed {seed}: {o.chars} chars, rep-4 {o.rep_4}, {doc.seconds:.0f} s")
    return {k: statistics.fmean(r[k] for r in rows if r[k] is not None) for k in rows[0]}


def table(results: dict[str, dict[str, float]]) -> str:
    head = "| decoding | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, rule]
    for name, r in results.items():
        cells = [fmt.format(r[key]) if r.get(key) is not None else "–" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ensemble-quality"), help="project dir (reused)")
    ap.add_argument("--preset", default="tiny", help="pretrain-base preset: test, tiny or small")
    ap.add_argument("--seeds", default="0,1", help="comma-separated compose seeds")
    ap.add_argument("--target-chars", type=int, default=600, help="target length of every section")
    ap.add_argument("--topics", default=None, help="comma-separated topics (default: all)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names from CONFIGS")
    ap.add_argument("--expert-epochs", type=float, default=None, help="override the experts' epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--base", default=None, help="pretrained base model directory (skips pretrain-base)")
    ap.add_argument("--corpus", type=Path, default=None, help="corpus file or directory instead of the example's")
    ap.add_argument("--topics-file", type=Path, default=None, help="YAML with theme, topics (and outline)")
    ap.add_argument(
        "--train", action="append", default=[], metavar="KEY=VALUE", help="override a training default (repeatable)"
    )
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    topics = [t.strip() for t in args.topics.split(",")] if args.topics else None
    train_over: dict[str, Any] = {"epochs": args.expert_epochs} if args.expert_epochs else {}
    for item in args.train:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--train wants KEY=VALUE, got {item!r}")
        train_over[key.strip()] = yaml.safe_load(value)
    topics_file = yaml.safe_load(args.topics_file.read_text(encoding="utf-8")) if args.topics_file else None
    if topics is None and topics_file is not None:
        topics = [t["name"] for t in topics_file["topics"]]

    t0 = time.perf_counter()
    cfg, root, experts = prepare(
        args.workdir, args.preset, topics, train_over, base=args.base, corpus=args.corpus, topics_file=topics_file
    )
    prepare_s = time.perf_counter() - t0
    names = [m.name for m in experts]
    experts_table, expert_rows = expert_report(cfg, names)
    print(experts_table)
    sections = sections_for(root, names, topics_file)
    title = (topics_file or {}).get("title") or "함께"
    results = {}
    stage_s = {"prepare": prepare_s}
    for name in configs:
        t = time.perf_counter()
        results[name] = run_config(cfg, root, name, sections, seeds, args.target_chars, title)
        stage_s[name] = time.perf_counter() - t
        print(f"{name}: {stage_s[name]:.0f} s")

    machine = (
        f"{platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    )
    print()
    base_s = f"base {args.base}" if args.base else f"base preset {args.preset}"
    corpus_s = f", corpus {args.corpus}" if args.corpus else ""
    print(
        f"{date.today()}, {machine}; {base_s}{corpus_s}, {len(sections)} sections × "
        f"{args.target_chars} chars, seeds {seeds} (means)"
    )
    print(experts_table)
    print()
    print(table(results))
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stage_s.items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": str(date.today()),
                    "machine": machine,
                    "args": vars(args) | {"workdir": str(args.workdir)},
                    "results": results,
                    "experts": expert_rows,
                    "stage_seconds": stage_s,
                },
                ensure_ascii=False,
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
