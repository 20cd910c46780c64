"""Embedded BM25 (tantivy) against rank_bm25 on ~100k Korean passages, in one run.

    python benchmarks/retrieval.py [--passages 100000] [--queries 200] [--workers 2] [corpus.jsonl]

The passages are made from KoCoNovel (~714k chars): its sentences, shuffled deterministically and reused, are
packed into documents until the corpus holds about `--passages` passages of 150-300 chars. Then, in one run:

- build: `build_index` on that corpus (clean, split, analyze with nori + nori_adv, index), passages/s;
  the peer is rank_bm25.BM25Okapi fed the same passages' nori terms (its analysis timed on the same workers).
  Then the nori analyzer's two engines on 10,000 of the passages in one process: the compiled best path
  (`ensemble/text/_mecab_path.pyx`) against python-mecab-ko, and whether their terms are identical.
- query: p50/p95 latency of `search` for top-10 and top-500 (analysis and fetching the texts included)
  against rank_bm25's get_scores + argsort on the same terms (its analysis included).
- agreement: top-10 overlap with rank_bm25 (k1=1.2, b=0.75 there too). rank_bm25's idf is
  log((N-n+0.5)/(n+0.5)) with a floor, Lucene's log(1+(N-n+0.5)/(n+0.5)), and Lucene stores lengths in one
  byte, so the overlap is high but below 100%.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/koconovel/corpus.jsonl"
PASSAGE_CHARS = 300  # passages.max_chars; min_chars 150 keeps them in the 150-300 range
DOC_PASSAGES = 8  # passages per generated document


def sentence_pool(path: Path) -> list[str]:
    from ensemble.text.sentences import split_many

    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    paragraphs = [p for t in texts for p in t.split("\n") if p.strip()]
    return [s for sents in split_many(paragraphs) for s in sents if 10 <= len(s) <= PASSAGE_CHARS]


def write_corpus(pool: list[str], passages: int, dest: Path) -> int:
    """Documents of shuffled sentences, about DOC_PASSAGES full passages each; returns the document count."""
    rng = random.Random(0)
    order: list[str] = []
    target_chars = int(passages * PASSAGE_CHARS * 0.835)  # ~250 chars of text per passage (measured)
    written = 0
    docs = 0
    with dest.open("w", encoding="utf-8") as f:
        while written < target_chars:
            body: list[str] = []
            size = 0
            while size < DOC_PASSAGES * PASSAGE_CHARS * 0.8:
                if not order:
                    order = pool[:]
                    rng.shuffle(order)
                s = order.pop()
                body.append(s)
                size += len(s) + 1
            f.write(json.dumps({"id": f"d{docs:06d}", "text": " ".join(body)}, ensure_ascii=False) + "\n")
            written += size
            docs += 1
    return docs


def make_queries(pool: list[str], n: int) -> list[str]:
    """2-4 consecutive words from random sentences: the kind of thing a subtopic query looks like."""
    rng = random.Random(1)
    out = []
    while len(out) < n:
        words = rng.choice(pool).split()
        if len(words) < 4:
            continue
        k = rng.randint(2, 4)
        i = rng.randrange(0, len(words) - k + 1)
        out.append(" ".join(words[i : i + k]))
    return out


def all_passages(retriever) -> tuple[list[str], list[str]]:
    """(ids, texts) of every indexed passage, read back from the embedded index."""
    import tantivy

    searcher = retriever._index.searcher()  # noqa: SLF001 - a benchmark may look inside
    addrs = [a for _, a in searcher.search(tantivy.Query.all_query(), limit=searcher.num_docs, count=False).hits]
    offsets = searcher.fast_field_values("off", addrs)
    lengths = searcher.fast_field_values("len", addrs)
    records = [retriever._log.read(o, n) for o, n in zip(offsets, lengths, strict=True)]  # noqa: SLF001
    return [r[0] for r in records], [r[2] for r in records]


def _analyze_chunk(texts: list[str]) -> list[list[str]]:
    from ensemble.text.analyzers import analyze_many

    return analyze_many(texts, "nori")


def analyze_in_workers(texts: list[str], workers: int) -> list[list[str]]:
    """The peer's analysis on the same cores ours may use."""
    if workers < 2:
        return _analyze_chunk(texts)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [texts[i : i + 500] for i in range(0, len(texts), 500)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return [terms for part in pool.map(_analyze_chunk, chunks) for terms in part]


def compare_engines(texts: list[str]) -> tuple[float, float, bool]:
    """Passages/s of the nori analyzer on its compiled best path and on python-mecab-ko (both fields, fresh
    caches), and whether the two give the same terms."""
    from ensemble.text.nori import ADVERB_TAGS, DEFAULT_STOP_TAGS, NoriAnalyzer

    rates, outputs = [], []
    for compiled in (True, False):
        analyzer = NoriAnalyzer(DEFAULT_STOP_TAGS, DEFAULT_STOP_TAGS - ADVERB_TAGS, compiled=compiled)
        if compiled and not analyzer.compiled:
            raise SystemExit("the compiled best path is not built: reinstall with a C compiler (pip install -e .)")
        t = time.perf_counter()
        outputs.append([analyzer.fields(x) for x in texts])
        rates.append(len(texts) / (time.perf_counter() - t))
    return rates[0], rates[1], outputs[0] == outputs[1]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def timed_queries(fn, queries: list[str]) -> tuple[list[float], list]:
    """Milliseconds per query, and each query's result."""
    fn(queries[0])  # warm caches
    ms, results = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(fn(q))
        ms.append((time.perf_counter() - t) * 1000)
    return ms, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--passages", type=int, default=100_000, help="about this many passages")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--peer-queries", type=int, default=100, help="rank_bm25 is slow: time it on fewer")
    ap.add_argument("--workers", type=int, default=2, help="processes for splitting and analysis")
    args = ap.parse_args()

    import numpy as np
    from rank_bm25 import BM25Okapi

    from ensemble.config.project import PassagesConfig, ProjectConfig
    from ensemble.retrieval.base import open_retriever
    from ensemble.retrieval.build import build_index
    from ensemble.text.analyzers import analyze

    pool = sentence_pool(args.corpus)
    queries = make_queries(pool, args.queries)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        root = Path(tmp)
        n_docs = write_corpus(pool, args.passages, root / "corpus.jsonl")
        cfg = ProjectConfig(
            corpus=["corpus.jsonl"], passages=PassagesConfig(max_chars=PASSAGE_CHARS, min_chars=150)
        ).with_base_dir(root)
        print(f"corpus: {n_docs:,} documents from {len(pool):,} distinct sentences of {args.corpus.name}")

        s = build_index(cfg, workers=args.workers)
        ours_build = s.passages / s.seconds
        print(
            f"ours   build: {s.passages:,} passages in {s.seconds:.1f} s = {ours_build:,.0f} passages/s "
            f"(workers={args.workers}; clean + split + nori + nori_adv + tantivy)"
        )

        retriever = open_retriever(cfg)
        ids, texts = all_passages(retriever)
        lengths = sorted(len(t) for t in texts)
        print(
            f"passages: {len(texts):,}, chars p5/p50/p95 = {lengths[len(lengths) // 20]}/"
            f"{lengths[len(lengths) // 2]}/{lengths[len(lengths) * 19 // 20]}"
        )

        t = time.perf_counter()
        tokens = analyze_in_workers(texts, args.workers)
        peer_analysis = time.perf_counter() - t
        t = time.perf_counter()
        bm25 = BM25Okapi(tokens, k1=1.2, b=0.75)
        peer_index = time.perf_counter() - t
        peer_build = len(texts) / (peer_analysis + peer_index)
        print(
            f"peer   build: nori analysis {peer_analysis:.1f} s (one field, workers={args.workers}) "
            f"+ BM25Okapi {peer_index:.1f} s = {peer_build:,.0f} passages/s"
        )
        print(
            f"  build ratio ours/peer: {ours_build / peer_build:.2f}x  "
            f"(ours analyzes two fields and splits sentences; nori analysis alone: "
            f"{len(texts) / peer_analysis:,.0f} passages/s)"
        )

        compiled, mecab, same = compare_engines(texts[:10_000])
        print(
            f"nori engines, one process, {min(len(texts), 10_000):,} passages, both fields: compiled best path "
            f"{compiled:,.0f} passages/s vs python-mecab-ko {mecab:,.0f} = {compiled / mecab:.2f}x (same terms: {same})"
        )

        def peer_search(q: str, k: int) -> list[tuple[int, float]]:
            scores = bm25.get_scores(analyze(q, "nori"))
            top = np.argsort(scores)[::-1][:k]
            return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

        rows = []
        top10: tuple[list, list] = ([], [])
        for k in (10, 500):
            ours_ms, ours_hits = timed_queries(lambda q, k=k: retriever.search(q, k=k), queries)
            peer_ms, peer_hits = timed_queries(lambda q, k=k: peer_search(q, k), queries[: args.peer_queries])
            rows.append((k, ours_ms, peer_ms))
            if k == 10:
                top10 = (ours_hits, peer_hits)
        theme_ms, _ = timed_queries(lambda q: retriever.search(q, theme="함께 살아가는 사람들", k=500), queries)
        print(
            f"query latency (ms), ours over {len(queries)} queries, peer over {min(len(queries), args.peer_queries)}:"
        )
        for k, ours_ms, peer_ms in rows:
            o50, o95, p50, p95 = pct(ours_ms, 50), pct(ours_ms, 95), pct(peer_ms, 50), pct(peer_ms, 95)
            print(
                f"  top-{k:<3}  ours p50 {o50:7.2f}  p95 {o95:7.2f} | peer p50 {p50:7.1f}  p95 {p95:7.1f} | "
                f"ours faster: p50 {p50 / o50:6.1f}x  p95 {p95 / o95:6.1f}x"
            )
        print(
            f"  top-500 with a theme (must clause), ours only: p50 {pct(theme_ms, 50):.2f}  p95 {pct(theme_ms, 95):.2f}"
        )

        position = {pid: i for i, pid in enumerate(ids)}
        overlaps, exact = [], 0
        for ours_hits, peer_hits in zip(*top10, strict=False):  # stops at the peer's (shorter) list
            ours = [position[h.id] for h in ours_hits]
            peer = [i for i, _ in peer_hits]
            if not peer and not ours:
                continue
            overlaps.append(len(set(ours) & set(peer)) / max(len(ours), len(peer)))
            exact += ours == peer
        print(
            f"top-10 overlap with rank_bm25: mean {statistics.mean(overlaps):.1%}, identical lists "
            f"{exact}/{len(overlaps)} (idf and length norms differ, see the docstring)"
        )
        retriever.close()


if __name__ == "__main__":
    main()
