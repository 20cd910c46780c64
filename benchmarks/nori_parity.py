"""Token parity of our analyzers with Lucene's (the analyzers Elasticsearch runs).

Needs a JDK and Lucene jars holding the Nori module (e.g. Debian's liblucene8-java: Lucene 8.8.1, whose Nori
dictionary is mecab-ko-dic 2.0.3, the one Elasticsearch 7 and 8 ship). The Java side is our own
`benchmarks/lucene/AnalyzerDump.java`, compiled into a temporary folder.

    python benchmarks/nori_parity.py --jar /usr/share/java --text novel=/path/corpus.jsonl \
        --text own=tests/text/data/nori_gold.jsonl --analyzer nori --diff 20

Each --text is LABEL=PATH: a .jsonl file (the "text" field of each record, split into lines), a folder (its
.txt/.md/.jsonl files), a .tsv file of STYLE<TAB>TEXT lines (PATH#STYLE keeps one style) or a plain text file
(one unit per line). Prints micro token F1 per label and overall;
`--speed PATH` times analyze_many on passages cut from PATH against mecab's bare parse (no Java needed).
`--gold OUT` writes Lucene's tokens (one key per --analyzer) for the last --text as JSON lines; that is how
tests/text/data/nori_gold.jsonl was made (Lucene 8.8.1 from Debian's liblucene8-java):

    python benchmarks/nori_parity.py --jar /usr/share/java --analyzer nori --analyzer nori_adv \
        --text own=tests/text/data/nori_sentences.tsv --gold tests/text/data/nori_gold.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JAVA_SOURCE = HERE / "lucene" / "AnalyzerDump.java"


def read_units(spec: str, limit: int | None) -> list[str]:
    raw, _, style = spec.partition("#")
    path = Path(raw)
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md", ".jsonl")) if path.is_dir() else [path]
    units: list[str] = []
    for f in files:
        if f.suffix == ".tsv":  # STYLE<TAB>TEXT lines; PATH#STYLE keeps one style
            for line in f.read_text(encoding="utf-8").splitlines():
                kind, _, text = line.partition("\t")
                if not style or kind == style:
                    units.append(text)
        elif f.suffix == ".jsonl":
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    units.extend(json.loads(line).get("text", "").splitlines())
        else:
            units.extend(f.read_text(encoding="utf-8").splitlines())
    units = [u.strip() for u in units if u.strip()]
    return units[:limit] if limit else units


def classpath(jars: list[str]) -> str:
    entries: list[str] = []
    for j in jars:
        p = Path(j)
        if p.is_dir():
            entries.extend(str(x) for x in sorted(p.glob("lucene-*.jar")))
        else:
            entries.append(str(p))
    return os.pathsep.join(entries)


def lucene_tokens(cp: str, analyzer: str, units: list[str], build: Path) -> list[list[str]]:
    if not (build / "AnalyzerDump.class").exists():
        subprocess.run(["javac", "-nowarn", "-cp", cp, "-d", str(build), str(JAVA_SOURCE)], check=True)
    proc = subprocess.run(
        ["java", "-cp", cp + os.pathsep + str(build), "AnalyzerDump", analyzer],
        input="\n".join(units) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    lines = proc.stdout.split("\n")[: len(units)]
    return [line.split("\t") if line else [] for line in lines]


def f1_counts(ours: list[list[str]], theirs: list[list[str]]):
    tp = n_ours = n_theirs = 0
    missed: collections.Counter[str] = collections.Counter()
    extra: collections.Counter[str] = collections.Counter()
    for a, b in zip(ours, theirs, strict=True):
        ca, cb = collections.Counter(a), collections.Counter(b)
        tp += sum((ca & cb).values())
        n_ours += len(a)
        n_theirs += len(b)
        missed.update(cb - ca)
        extra.update(ca - cb)
    return tp, n_ours, n_theirs, missed, extra


def f1(tp: int, n_ours: int, n_theirs: int) -> float:
    p = tp / n_ours if n_ours else 1.0
    r = tp / n_theirs if n_theirs else 1.0
    return 2 * p * r / (p + r) if p + r else 0.0


def passages(units: list[str], size: int, count: int) -> list[str]:
    """`count` passages of `size` chars cut from the joined units (cycled if short)."""
    text = " ".join(units)
    while len(text) < size * count:
        text = text + " " + text
    return [text[i * size : (i + 1) * size] for i in range(count)]


def speed(spec: str, name: str, count: int, size: int = 300, repeats: int = 3) -> None:
    """Throughput of analyze_many on `size`-char passages, against peers timed in the same run: the same
    analyzer on python-mecab-ko instead of the compiled best path, mecab's bare parse (the floor of any
    analyzer on python-mecab-ko) and python-mecab-ko's MeCab.pos."""
    import mecab
    from mecab.utils import create_lattice

    from ensemble.text.analyzers import analyze_many, get_analyzer
    from ensemble.text.nori import NoriAnalyzer

    texts = passages(read_units(spec, None), size, 2 * count)
    warm, timed = texts[:count], texts[count:]
    analyze_many(warm, name)  # caches fill on the first passages of a corpus, as in an indexing run
    on_mecab = NoriAnalyzer(get_analyzer(name).stop_tags, compiled=False)
    on_mecab.analyze_many(warm)
    tagger = mecab.MeCab()

    def bare(batch):
        for t in batch:
            tagger._tagger.parse(create_lattice(t))

    def pos(batch):
        for t in batch:
            tagger.pos(t)

    runs = {
        "ours": lambda b: analyze_many(b, name),
        "ours on mecab": on_mecab.analyze_many,
        "mecab parse only": bare,
        "MeCab.pos": pos,
    }
    best = {}
    for _ in range(repeats):  # interleaved, best of N: the machine is shared
        for label, fn in runs.items():
            t0 = time.perf_counter()
            fn(timed)
            best[label] = min(best.get(label, 1e9), time.perf_counter() - t0)
    base = best["ours"]
    print(f"speed {name}: {len(timed)} passages of {size} chars, best of {repeats}, one process")
    for label, dt in best.items():
        print(f"  {label:17s} {len(timed) / dt:8,.0f} passages/s   ours runs at {dt / base:5.2f}x this")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jar", action="append", help="Lucene jar or folder of jars (repeatable)")
    ap.add_argument("--text", action="append", default=[], help="LABEL=PATH (repeatable)")
    ap.add_argument("--speed", metavar="PATH", help="time analyze_many on ~300-char passages cut from PATH")
    ap.add_argument("--passages", type=int, default=2000, help="passages for --speed (default 2000)")
    ap.add_argument("--analyzer", action="append", help="analyzer name(s); default nori")
    ap.add_argument("--limit", type=int, default=None, help="at most this many units per text")
    ap.add_argument("--diff", type=int, default=0, help="show the N most frequent differing tokens")
    ap.add_argument("--gold", type=Path, help="write Lucene's tokens for the last --text here (JSON lines)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE.parent))
    from ensemble.text.analyzers import analyze_many

    if args.speed:
        for name in args.analyzer or ["nori"]:
            speed(args.speed, name, args.passages)
    if not args.text:
        return 0
    if not args.jar:
        ap.error("--text needs --jar")
    cp = classpath(args.jar)
    gold: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        for name in args.analyzer or ["nori"]:
            total = [0, 0, 0]
            for spec in args.text:
                label, _, path = spec.rpartition("=")
                units = read_units(path, args.limit)
                if not units:
                    print(f"{name:9s} {label or path}: no text", flush=True)
                    continue
                theirs = lucene_tokens(cp, name, units, build)
                t0 = time.perf_counter()
                ours = analyze_many(units, name)
                dt = time.perf_counter() - t0
                tp, n_ours, n_theirs, missed, extra = f1_counts(ours, theirs)
                for i, v in enumerate((tp, n_ours, n_theirs)):
                    total[i] += v
                print(
                    f"{name:9s} {label or path:12s} units={len(units):6d} lucene_tokens={n_theirs:7d} "
                    f"ours={n_ours:7d} F1={f1(tp, n_ours, n_theirs):.4f}  ({len(units) / dt:,.0f} units/s)",
                    flush=True,
                )
                if args.diff:
                    print("   lucene only:", missed.most_common(args.diff))
                    print("   ours only:  ", extra.most_common(args.diff))
                if args.gold and spec == args.text[-1]:
                    if not gold:
                        gold = [{"text": u} for u in units]
                    for row, toks in zip(gold, theirs, strict=True):
                        row[name] = toks
            print(f"{name:9s} {'ALL':12s} F1={f1(*total):.4f}", flush=True)
    if args.gold:
        with args.gold.open("w", encoding="utf-8") as fh:
            for row in gold:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
