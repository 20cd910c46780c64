"""The int8 output layer against float32, on a real base: what it costs in the model's own scores and what it
saves in time.

    python benchmarks/int8_head.py --base DIR --text FILE [--tokens 512] [--rows 9] [--threads 0]

Scores: the base reads `--tokens` tokens of FILE (a .jsonl of {text} or plain text) once with its float32 output
layer and once with each int8 one (the host's: rows turned by a Hadamard matrix first; and plain, without the
turn); printed: KL(float32 ‖ int8) per token, the text's perplexity under each, and how often the top id agrees.
Time: the output layer alone on `--rows` hidden states (compose's rows per pass), the host's float32 path
(packed for oneDNN) vs int8, as the host runs it (the whole vocabulary; compose's corpus vocabulary narrows
both alike).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def timed(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    from compose import corpus_texts  # benchmarks/compose.py, beside this script
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ensemble.composition.int8_head import Int8Rows
    from ensemble.composition.packed_linear import packed_linear, packed_weight

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--text", type=Path, required=True)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rows", type=int, default=9)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32).eval()
    text = "\n\n".join(corpus_texts(args.text))[: 20 * args.tokens]
    ids = tok(text, return_tensors="pt").input_ids[:, : args.tokens]
    head = model.get_output_embeddings()
    with torch.inference_mode():
        hidden = model.get_decoder()(ids).last_hidden_state[0, :-1]
        exact = head(hidden).log_softmax(-1)
        target = ids[0, 1:, None]
        ppl = exact.gather(1, target).mean().neg().exp().item()
        print(f"{args.base}: {hidden.shape[0]} tokens of {args.text.name}, vocabulary {head.weight.shape[0]:,}")
        print(f"{'output layer':24}{'KL/token':>10}{'perplexity':>12}{'top id agrees':>15}")
        print(f"{'float32':24}{0:10.4f}{ppl:12.2f}{1:15.3f}")
        variants = {"int8, turned (host)": Int8Rows(head.weight), "int8, plain": Int8Rows(head.weight, max_block=1)}
        for name, rows in variants.items():
            got = rows(hidden, head.bias).log_softmax(-1)
            kl = (exact.exp() * (exact - got)).sum(-1).mean().item()
            p = got.gather(1, target).mean().neg().exp().item()
            agree = (got.argmax(-1) == exact.argmax(-1)).float().mean().item()
            print(f"{name:24}{kl:10.4f}{p:12.2f}{agree:15.3f}")

        x = hidden[: args.rows].contiguous()
        packed = packed_weight(head.weight)
        vocab = head.weight.shape[0]
        t_float = timed(lambda: packed_linear(x, packed, head.bias, vocab), 20)
        t_int8 = timed(lambda: variants["int8, turned (host)"](x, head.bias), 20)
    print(
        f"\noutput layer at {args.rows} rows, threads {torch.get_num_threads()}: "
        f"float32 packed {t_float * 1e3:.2f} ms, int8 {t_int8 * 1e3:.2f} ms: {t_float / t_int8:.2f}× faster"
    )


if __name__ == "__main__":
    main()
