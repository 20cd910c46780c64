"""Decoding settings compared by the evaluation metrics, on the example project, same experts, same seeds.

    python benchmarks/quality.py [--workdir DIR] [--preset tiny] [--seeds 0,1] [--target-chars 600]
                                 [--configs recipe,defaults,...] [--topics family,nature] [--json out.json]

Builds (or reuses, in --workdir) the `ensemble init` example: index, pretrain-base model, one expert per
topic; then composes the same outline once per decoding configuration and seed, evaluates every document with
`ensemble.evaluate`, and prints one row per configuration (means over seeds):

- recipe: the original recipe's decoding: repetition_penalty 2.0 on every token (particles included),
  top-k 30, top-p 0.95, 2-sentence chaining, one sample per step, no guards;
- defaults: this project's compose defaults (see `GenerationParams`);
- the alternatives listed in CONFIGS, each changing one thing.

Columns: the document-level measures of `ensemble evaluate` (distinct-2, rep-n and copy rate over analyzer
terms; own 1st = share of sections whose own expert's data matches them best; perplexities token-weighted),
then the composer's own counts: sentences the repeat/copy guards rejected, sections stopped by the step cap
before reaching their length, and seconds spent composing.

"No guards" means the repeat and copy guards accept every sentence; when `GenerationParams` has no switch for
that, this script turns them off by patching the guard classes for that configuration only. Contrastive search
is not offered: compose samples in its own per-row logits processor, which has no degeneration penalty.

Sizes are flags because a CPU run is slow: the `test` preset and --target-chars 200 take a few minutes, the
`tiny` preset with six sections of 600 characters and two seeds about half an hour on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
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
from ensemble.retrieval.build import build_index
from ensemble.training.experts import train_experts
from ensemble.training.pretrain import pretrain_base

# name -> (generation settings over the defaults, guards on?)
CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    "recipe": (
        {
            "repetition_penalty": 2.0,
            "penalty_exempt_particles": False,
            "no_repeat_ngram_size": 0,
            "top_k": 30,
            "top_p": 0.95,
            "temperature": 1.0,
            "context_sentences": 2,
            "candidates": 1,
        },
        False,
    ),
    "defaults": ({}, True),
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


@contextlib.contextmanager
def guards(enabled: bool) -> Iterator[dict[str, Any]]:
    """Settings that turn the guards off (if compose has a switch), else patch them off for the duration."""
    if enabled:
        yield {}
        return
    if "guards" in GenerationParams.model_fields:
        yield {"guards": False}
        return
    from ensemble.composition import guard

    saved = guard.RepeatGuard.rejects, guard.CopyGuard.rejects
    guard.RepeatGuard.rejects = lambda self, sentence: False  # type: ignore[method-assign]
    guard.CopyGuard.rejects = lambda self, sentence: False  # type: ignore[method-assign]
    try:
        yield {}
    finally:
        guard.RepeatGuard.rejects, guard.CopyGuard.rejects = saved  # type: ignore[method-assign]


def prepare(root: Path, preset: str, topics: list[str] | None, train_over: dict[str, Any]) -> tuple[Any, Path, list]:
    """The example project with index, base and experts (each step skipped when already done)."""
    if not (root / "ensemble.yaml").is_file():
        init_project(root)
    cfg = load_project(root / "ensemble.yaml")
    t = time.perf_counter()
    build_index(cfg)
    print(f"index: {time.perf_counter() - t:.0f} s")
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
    doc.setdefault("defaults", {}).update(train_over)
    bench_topics = root / "bench-topics.yaml"
    bench_topics.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    t = time.perf_counter()
    experts = train_experts(cfg, bench_topics, only=topics)
    print(f"experts ({', '.join(m.name for m in experts)}): {time.perf_counter() - t:.0f} s")
    return cfg, root, experts


def sections_for(root: Path, names: list[str]) -> list[dict[str, str]]:
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


def run_config(
    cfg: Any, root: Path, name: str, sections: list[dict[str, str]], seeds: list[int], target: int
) -> dict[str, float]:
    settings, guarded = CONFIGS[name]
    rows: list[dict[str, float]] = []
    with guards(guarded) as extra:
        outline = {
            "title": "함께",
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
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    topics = [t.strip() for t in args.topics.split(",")] if args.topics else None
    train_over = {"epochs": args.expert_epochs} if args.expert_epochs else {}

    cfg, root, experts = prepare(args.workdir, args.preset, topics, train_over)
    sections = sections_for(root, [m.name for m in experts])
    results = {}
    for name in configs:
        t = time.perf_counter()
        results[name] = run_config(cfg, root, name, sections, seeds, args.target_chars)
        print(f"{name}: {time.perf_counter() - t:.0f} s")

    machine = (
        f"{platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    )
    print()
    print(
        f"{date.today()}, {machine}; base preset {args.preset}, {len(sections)} sections × "
        f"{args.target_chars} chars, seeds {seeds} (means)"
    )
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": str(date.today()),
                    "machine": machine,
                    "args": vars(args) | {"workdir": str(args.workdir)},
                    "results": results,
                },
                ensure_ascii=False,
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
