"""`ensemble plan` on a real corpus: do the drafted topics' datasets overlap little, is each big enough, and does
train-experts take the result unchanged?

    python benchmarks/plan.py [--corpus ../shared/data/koconovel/corpus.jsonl] [--theme 사람] [--topics 7]
                              [--queries 3] [--top-k 50] [--seeds 0,1,2] [--workdir DIR] [--train-check]

Makes a scratch project on the corpus (nori analyzer, embedded index) in --workdir (a temporary directory by
default), builds its index, then for each seed drafts topics.yaml with `plan_topics`, writes it, loads it with
`load_topics` and runs train-experts' own data step on it (`retrieve_topic` per topic, the overlaps of
`with_overlaps`: Jaccard of the passage sets by text). One row per seed: seconds to plan, mean and max pairwise
Jaccard, the fewest hits of a topic (hits summed over its queries, as train-experts reports them) and the fewest
distinct passages of a topic, against top_k. Goals (issue 17): mean ≤ 0.2, max ≤ 0.5, hits ≥ top_k.

--train-check: after the first seed, `pretrain-base --preset test` and `train-experts` with `max_steps: 1`
(and a small batch) added to the planned file's defaults: train-experts accepts the plan and trains every expert.

KoCoNovel ("KoCoNovel" by Kyuhee Kim, Surin Lee and Sangah Lee, CC BY-SA 4.0) is not in this repository.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "koconovel" / "corpus.jsonl"


def make_project(root: Path, corpus: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ensemble.yaml"
    path.write_text(
        f"corpus: [{corpus.resolve()}]\nindex:\n  backend: embedded\n  analyzer: nori\nwork_dir: .ensemble\n",
        encoding="utf-8",
    )
    return path


def measure(cfg, topics_path: Path) -> dict:
    """train-experts' data step on the planned file: per topic hits and passages, pairwise Jaccard."""
    from ensemble.retrieval.base import open_retriever
    from ensemble.training.config import load_topics
    from ensemble.training.topic_data import retrieve_topic, with_overlaps

    topics = load_topics(topics_path)
    with open_retriever(cfg) as r:
        data = with_overlaps({t.name: retrieve_topic(r, topics, t, topics.params(t)) for t in topics.topics})
    pairs = [d.overlap[o] for i, (n, d) in enumerate(data.items()) for o in list(data)[i + 1 :]]
    return {
        "mean_j": statistics.fmean(pairs) if pairs else 0.0,
        "max_j": max(pairs, default=0.0),
        "min_hits": min(d.hits for d in data.values()),
        "min_passages": min(d.passages for d in data.values()),
        "per_topic": {n: (d.hits, d.passages) for n, d in data.items()},
    }


def train_check(cfg, cfg_path: Path, topics_path: Path) -> str:
    import ensemble

    ensemble.pretrain_base(cfg, preset="test")
    spec = yaml.safe_load(topics_path.read_text(encoding="utf-8"))
    spec["defaults"].update({"max_steps": 1, "micro_batch_size": 1, "grad_accum": 1, "block_size": 64})
    check = topics_path.with_name("topics-check.yaml")
    check.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    manifests = ensemble.train_experts(ensemble.load_project(cfg_path), check)
    return f"train-experts trained {len(manifests)} experts (max_steps 1) on the planned topics"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--theme", default="사람")
    ap.add_argument("--topics", type=int, default=7)
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--train-check", action="store_true")
    args = ap.parse_args()

    import ensemble
    from ensemble.planning import plan_topics

    root = args.workdir or Path(tempfile.mkdtemp(prefix="plan-bench-"))
    cfg_path = make_project(root, args.corpus)
    cfg = ensemble.load_project(cfg_path)
    t0 = time.perf_counter()
    s = ensemble.build_index(cfg)
    print(f"index: {s.documents} documents, {s.passages} passages ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    print(f"theme '{args.theme}', {args.topics} topics × {args.queries} queries, top_k {args.top_k}")
    print("seed  plan s  theme passages  mean J  max J  min hits  min passages  hits ≥ top_k")
    first = None
    for seed in (int(x) for x in args.seeds.split(",")):
        t = time.perf_counter()
        plan = plan_topics(cfg, args.theme, args.topics, queries=args.queries, top_k=args.top_k, seed=seed)
        secs = time.perf_counter() - t
        path = root / f"topics-seed{seed}.yaml"
        path.write_text(plan.topics_yaml(), encoding="utf-8")
        (root / f"outline-seed{seed}.yaml").write_text(plan.outline_yaml(), encoding="utf-8")
        m = measure(cfg, path)
        ok = "yes" if m["min_hits"] >= args.top_k else "no"
        print(
            f"{seed:>4}  {secs:6.1f}  {plan.theme_passages:>14}  {m['mean_j']:6.3f}  {m['max_j']:5.3f}  "
            f"{m['min_hits']:>8}  {m['min_passages']:>12}  {ok}"
        )
        print("      " + ", ".join(f"{n} {h}/{p}" for n, (h, p) in m["per_topic"].items()), file=sys.stderr)
        first = first or path
    if args.train_check and first is not None:
        print(train_check(cfg, cfg_path, first))
    print(f"files in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
