"""Sentence splitting throughput on ~200 KB of Korean prose.

    python benchmarks/sentences.py [corpus.jsonl] [--chars 200000] [--no-mecab]

Compares, in one run and on the same text: our split_many with the kss backend (kss's compiled
'fast' splitter + our quote repairs), our rule-based fallback, and kss with the mecab analyser that
kss's backend="auto" picks when mecab is installed. Prints chars/s and ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from ensemble.text.sentences import split_many

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/koconovel/corpus.jsonl"


def load_texts(path: Path, limit: int) -> list[str]:
    texts: list[str] = []
    total = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            texts.append(text[: limit - total])
            total += len(texts[-1])
            if total >= limit:
                break
    return texts


def timed(fn, *args, repeat: int = 3):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def lossless(texts: list[str], split: list[list[str]]) -> bool:
    squash = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    return all(squash(t) == squash("".join(s)) for t, s in zip(texts, split, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--chars", type=int, default=200_000)
    ap.add_argument("--no-mecab", action="store_true", help="skip the (slow) mecab-backed kss peer")
    args = ap.parse_args()

    texts = load_texts(args.corpus, args.chars)
    n_chars = sum(map(len, texts))
    print(f"text: {n_chars:,} chars in {len(texts)} documents from {args.corpus}")

    t = time.perf_counter()
    import kss

    print(f"import kss: {time.perf_counter() - t:.1f} s (paid once per process)")
    split_many(["워밍업 문장이다."], backend="kss")

    rows = []
    for name, backend in (("ensemble kss (fast)", "kss"), ("ensemble rules", "rules")):
        secs, out = timed(split_many, texts, backend)
        n_sent = sum(map(len, out))
        rows.append((name, secs, n_sent, lossless(texts, out)))

    if not args.no_mecab:
        chunks = [c.strip() for t in texts for c in t.splitlines() if c.strip()]
        kss.split_sentences(["워밍업 문장이다.", "둘"], backend="mecab", num_workers=1)
        secs, out = timed(lambda: kss.split_sentences(chunks, backend="mecab", num_workers=1), repeat=1)
        rows.append(("kss mecab (auto)", secs, sum(map(len, out)), None))

    base = rows[0][1]
    print(f"{'splitter':<22}{'seconds':>10}{'chars/s':>14}{'sentences':>11}{'x kss-fast':>12}  lossless")
    for name, secs, n_sent, ok in rows:
        ok_s = "-" if ok is None else ("yes" if ok else "NO")
        print(f"{name:<22}{secs:>10.3f}{n_chars / secs:>14,.0f}{n_sent:>11,}{secs / base:>12.2f}  {ok_s}")


if __name__ == "__main__":
    main()
