"""Composition throughput and memory: our expert host vs the recipe's way, on a GPT-2-124M-shaped model
or on a real base.

    python benchmarks/compose.py [--experts 7] [--steps 2] [--max-new-tokens 64] [--candidates 3]
                                 [--threads 1] [--kv auto|narrow|full] [--matmul auto|packed|plain]
                                 [--head auto|int8|float]
                                 [--lean-batch 11] [--size 124m|tiny] [--base DIR [--corpus FILE]] [--keep DIR]

Both sides write the same document: `experts` sections, each `steps` chaining steps of `max-new-tokens`
tokens from a prompt of `prompt-tokens` tokens on average (sections differ by up to ±12, as compose's prompts
differ; random-init weights and random-init LoRA adapters: speed and
memory do not depend on what the weights say; a tiny model's figures are dominated by Python overhead).
`--base DIR` uses a real transformers model directory instead (e.g. Gemma 3 270M: 262k vocabulary, so the
output layer and per-row sampling weigh far more than in GPT-2's 50k), with random LoRA adapters on its
q_proj/k_proj/v_proj/o_proj, and prompts of real Korean text cut to `prompt-tokens` of its tokenizer's tokens.
`--corpus FILE` (with `--base`) gives the host compose's default `vocabulary: corpus` for that corpus (e.g.
/work/shared/data/koconovel/corpus.jsonl): its output layer scores only those ids; the recipe keeps the whole
vocabulary, as the recipe did.

- recipe: each expert is its own full model (base with its LoRA merged in), all resident; sections are
  generated one after another at batch 1 with HF sampling (top-k 30, top-p 0.95, repetition_penalty 2.0).
- host:   one base with every expert attached as a PEFT adapter (ensemble.composition.host.ExpertHost); each
  step is ONE call holding all sections × `candidates` rows, each row with its own adapter and seed; run
  twice: with the default rows per forward pass (as many as keep the KV cache within 30 % of the
  weights: here all 21 in one pass) and with `--lean-batch` rows per pass (21 rows go as 11 + 10: less
  memory, fewer tokens/s), and a third time with torch's own matmuls instead of weights pre-packed for oneDNN
  ("host plain"; the host packs by default on a CPU in float32, `--matmul`), and a fourth time with a float32
  output layer instead of its int8 copy ("host fp32 head"; the host's default on a CPU in float32 is int8,
  `--head`). On a CPU the host prefills its KV cache in bfloat16 (`--kv`; see the README).

"document" tokens count only the kept candidate: the headline, the speed a writer feels (the host samples 3
candidates per step to keep the best, the recipe samples one); "generated" tokens count every candidate, the
work done. Neither side ends a row early: the recipe generates with min_new_tokens = max_new_tokens and the
host's end-of-text score is masked at every step the same way, so both write the same number of tokens per
section and step (until this release only the recipe's were held to it: a host row that ended early at the
end-of-text token shortened the host's document while its round still ran as long as its longest row). Tokens
per CPU-second are shown beside tokens per wall-second because the machine's cores may be shared: with one
thread per process, CPU time is the work each side did, wall time also counts waiting for a core.

Each side runs in its own process. "Peak memory" is the process's peak RSS, the measure the memory goal
(≤ 1.3× one model) is judged by: it is what a user's machine must hold, and it is how the recipe's figures
that set the goal were taken (a 7-row PEFT batch at ~1/4 of the recipe's memory). "Model memory" is the
stricter view: the peak RSS above what the libraries hold once imported (the peak mark is reset after the
imports). Threads: torch.set_num_threads(--threads) in every process
(default 1), so both sides get the same compute whatever else runs on the machine; `--threads 0` leaves torch's
default (every core), which is what compose and the recipe's HF generate run with.
Also checked: greedy outputs of the batched mixed-adapter rows equal each adapter run alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EOS = "<|endoftext|>"


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def start_memory() -> int:
    """Reset the peak-RSS mark (Linux: clear_refs 5) and return the current RSS: what the libraries hold."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss() -> int:
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- artifacts ------------------------------------------------------------------------------------------


def base_dir(root: Path, args) -> Path:
    return args.base if args.base else root / "base"


def load_base(root: Path, args):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_dir(root, args), dtype="float32")


def build_adapters(root: Path, args) -> None:
    """Random LoRA adapters on a real base's attention projections."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    for e in range(args.experts):
        lora = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        get_peft_model(load_base(root, args), lora).save_pretrained(root / f"expert{e}", safe_serialization=True)


def build(root: Path, experts: int, size: str) -> None:
    """A byte-level tokenizer with GPT-2's vocabulary size, a random-init GPT-2, and random LoRA adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(byte_chars))}
    config = GPT2Config() if size == "124m" else GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=256)
    while len(vocab) < config.vocab_size - 1:
        vocab[f"tok{len(vocab)}"] = len(vocab)
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS)
    fast.save_pretrained(root / "base")
    model = GPT2LMHeadModel(config)
    model.config.pad_token_id = fast.pad_token_id
    model.save_pretrained(root / "base", safe_serialization=True)
    for e in range(experts):
        base = GPT2LMHeadModel.from_pretrained(root / "base")
        lora = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["c_attn", "c_proj"],
            fan_in_fan_out=True,
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        get_peft_model(base, lora).save_pretrained(root / f"expert{e}", safe_serialization=True)


KOREAN = (
    "봄이 오면 마을 앞 개울에는 얼음이 녹아 흐르는 소리가 들렸다. 아이들은 학교가 끝나면 둑길을 따라 뛰어가며 "
    "버들강아지를 꺾었고, 어른들은 밭을 갈 준비로 분주했다. 할머니는 장독대 옆에 앉아 지난겨울 이야기를 "
    "들려주곤 하셨다. 그해 겨울은 유난히 길었고, 눈이 지붕까지 쌓여 사람들은 며칠씩 집 밖으로 나가지 못했다고 "
    "했다. 도시로 떠난 삼촌에게서는 한동안 편지가 오지 않았다. 어머니는 저녁마다 등잔불 아래에서 바느질을 "
    "하며 삼촌의 안부를 걱정했다. 어느 날 우체부가 자전거를 끌고 언덕을 넘어왔을 때, 온 식구가 마당으로 "
    "달려 나갔다. 봉투 안에는 짧은 편지와 함께 낡은 사진 한 장이 들어 있었다. 사진 속의 삼촌은 낯선 공장 "
    "앞에서 웃고 있었지만, 그 얼굴은 어딘가 지쳐 보였다. 아버지는 말없이 사진을 오래 들여다보다가 벽에 "
    "걸린 달력 옆에 조심스럽게 꽂아 두었다. 그날 밤 나는 처음으로 마을 밖의 세상을 떠올려 보았다. "
)


# Section e's prompt is `length + SPREAD[e % 7]` tokens: compose's prompts (each section's last sentences) differ
# in length, so the host pads its rows, as it does in compose; the mean stays `length` for 1, 3 or 7 sections.
SPREAD = (0, -8, 8, -4, 4, -12, 12)


def prompts(n: int, length: int, tok=None) -> list[str]:
    sizes = [max(1, length + SPREAD[e % len(SPREAD)]) for e in range(n)]
    if tok is None:
        # ASCII: one byte, one token, so every prompt is exactly its size in tokens.
        return [(f"section {e} " * size)[:size] for e, size in enumerate(sizes)]
    # Real Korean text, each section from its own place in it, cut to its size in the tokenizer's tokens.
    ids = tok(KOREAN * (2 + n), add_special_tokens=False)["input_ids"]
    step = max(1, len(tok(KOREAN, add_special_tokens=False)["input_ids"]) // max(n, 1))
    return [tok.decode(ids[e * step : e * step + size]) for e, size in enumerate(sizes)]


def corpus_texts(path: Path) -> list[str]:
    """The documents of a .jsonl corpus (its "text" fields) or of a text file (one per blank-line block)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in raw.splitlines() if line.strip()]
    return [block for block in raw.split("\n\n") if block.strip()]


def start_id(tok) -> int:
    """The host's start token: `<bos>` where the tokenizer has one, else its end-of-text token."""
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


# -- the two ways ---------------------------------------------------------------------------------------


def run_recipe(root: Path, args) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, LogitsProcessor, LogitsProcessorList

    t_load = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base_dir(root, args))
    models = []
    for e in range(args.experts):
        base = load_base(root, args)
        models.append(PeftModel.from_pretrained(base, str(root / f"expert{e}")).merge_and_unload().eval())
    load_s = time.perf_counter() - t_load

    first: dict[int, float] = {}

    class FirstToken(LogitsProcessor):
        def __init__(self, e: int) -> None:
            self.e = e

        def __call__(self, input_ids, scores):
            first.setdefault(self.e, time.perf_counter())
            return scores

    tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for e, text in enumerate(prompts(args.experts, args.prompt_tokens, tok if args.base else None)):
            ids = torch.tensor([[start_id(tok)] + tok(text, add_special_tokens=False)["input_ids"]])
            for step in range(args.steps):
                torch.manual_seed(1000 * e + step)
                out = models[e].generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_k=30,
                    top_p=0.95,
                    repetition_penalty=2.0,
                    max_new_tokens=args.max_new_tokens,
                    min_new_tokens=args.max_new_tokens,
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                    logits_processor=LogitsProcessorList([FirstToken(e)]),
                )
                tokens += out.shape[1] - ids.shape[1]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ttft = [first[e] - t0 for e in sorted(first)]
    return {
        "load_s": load_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "tokens": tokens,
        "doc_tokens": tokens,
        "ttft": ttft,
        "peak_rss": peak_rss(),
    }


def run_host(root: Path, args) -> dict:
    import torch
    from transformers import AutoTokenizer

    import ensemble.composition.host as host_mod
    from ensemble.composition.config import GenerationParams
    from ensemble.composition.types import Request, Sampling

    t_load = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base_dir(root, args))
    base = load_base(root, args)
    names = [f"expert{e}" for e in range(args.experts)]
    narrow = {"auto": None, "narrow": True, "full": False}[args.kv]
    host = host_mod.ExpertHost(
        base,
        tok,
        lora={n: root / n for n in names},
        narrow_kv=narrow,
        max_batch=args.max_batch or None,
        packed=None if args.matmul == "auto" else args.matmul == "packed",
        int8_head=None if args.head == "auto" else args.head == "int8",
    )
    if args.corpus:
        from ensemble.composition.vocabulary import tokenizer_allowed_ids

        host.restrict_vocabulary(tokenizer_allowed_ids(tok, corpus_texts(args.corpus), host.token_texts()))
    load_s = time.perf_counter() - t_load

    # First token of a section: the first sampling step of the first batch holding one of its rows.
    first: dict[int, float] = {}
    sampler_choose = host_mod.RowSampler.choose
    seen: set[int] = set()

    def timed_choose(self, input_ids, scores, rows):
        if id(self) not in seen:
            seen.add(id(self))
            now = time.perf_counter()
            for g in self.generators:
                first.setdefault(g.initial_seed() // 1000, now)
        return sampler_choose(self, input_ids, scores, rows)

    host_mod.RowSampler.choose = timed_choose
    no_end = end_text_masked(host, tok)  # the recipe's min_new_tokens, on the host's side
    sampling = Sampling.from_params(GenerationParams(max_new_tokens=args.max_new_tokens))
    texts = prompts(args.experts, args.prompt_tokens, tok if args.base else None)
    tokens = doc_tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(args.steps):
        reqs = [
            Request(texts[e], names[e], sampling, seed=1000 * e + 10 * step + c)
            for e in range(args.experts)
            for c in range(args.candidates)
        ]
        gens = host.generate(reqs)
        tokens += sum(g.tokens for g in gens)
        doc_tokens += sum(gens[e * args.candidates].tokens for e in range(args.experts))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    host_mod.RowSampler.choose = sampler_choose
    no_end.remove()
    peak = peak_rss()

    # Greedy: the batched mixed-adapter rows must equal each adapter run alone.
    greedy = Sampling(
        max_new_tokens=args.max_new_tokens,
        temperature=0,
        top_k=30,
        top_p=0.95,
        repetition_penalty=1.0,
        penalty_exempt_particles=True,
        no_repeat_ngram_size=0,
    )
    reqs = [Request(texts[e], names[e], greedy, 0) for e in range(args.experts)]
    batched = host.generate(reqs)
    alone = [host.generate([r])[0] for r in reqs]
    matches = sum(b.text == a.text for b, a in zip(batched, alone, strict=True))
    distinct = len({b.text for b in batched})
    return {
        "load_s": load_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "tokens": tokens,
        "doc_tokens": doc_tokens,
        "ttft": [first[e] - t0 for e in sorted(first)],
        "peak_rss": peak,
        "greedy_match": matches,
        "greedy_distinct": distinct,
        "vocabulary": host.vocabulary,
        "threads": torch.get_num_threads(),
    }


def end_text_masked(host, tok):
    """What HF's min_new_tokens does to the recipe, done to the host: the end-of-text token's score set to -inf
    at every step (a forward hook on the host's output layer; `.remove()` it), so that every host row writes
    max_new_tokens as every recipe row does."""
    import torch

    layer = host.output_layer()
    index = getattr(layer, "index", None)  # a vocabulary restricted to some ids: their columns
    ids = torch.arange(layer.weight.shape[0]) if index is None else index.cpu()
    columns = (ids == tok.eos_token_id).nonzero()[:, 0]

    def mask(module, inputs, output):
        return output.index_fill_(-1, columns.to(output.device), float("-inf"))

    return layer.register_forward_hook(mask)


def run_one(root: Path, args) -> dict:
    """The footprint of one model generating one section: what 'one model' means in the memory goal."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir(root, args))
    model = load_base(root, args).eval()
    text = prompts(1, args.prompt_tokens, tok if args.base else None)[0]
    ids = torch.tensor([[start_id(tok)] + tok(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            top_k=30,
            max_new_tokens=args.max_new_tokens,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    return {"peak_rss": peak_rss()}


ROLES = {"recipe": run_recipe, "host": run_host, "one": run_one}


def child(role: str, root: Path, args, **override) -> dict:
    cmd = [sys.executable, __file__, "--role", role, "--root", str(root)]
    keys = (
        "experts",
        "steps",
        "max_new_tokens",
        "candidates",
        "threads",
        "prompt_tokens",
        "size",
        "kv",
        "matmul",
        "head",
    )
    for key in (*keys, "max_batch"):
        cmd += [f"--{key.replace('_', '-')}", str(override.get(key, getattr(args, key)))]
    if args.base:
        cmd += ["--base", str(args.base)]
    if args.corpus:
        cmd += ["--corpus", str(args.corpus)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{role} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experts", type=int, default=7)
    ap.add_argument("--steps", type=int, default=2, help="chaining steps per section")
    ap.add_argument(
        "--max-new-tokens", type=int, default=None, help="tokens per chaining step (default: compose's default)"
    )
    ap.add_argument(
        "--candidates", type=int, default=None, help="host rows per section and step (default: compose's default)"
    )
    ap.add_argument("--prompt-tokens", type=int, default=40)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process; 0: torch's own default, every core (what compose and the recipe use)",
    )
    ap.add_argument("--size", choices=["124m", "tiny"], default="124m")
    ap.add_argument(
        "--kv", choices=["auto", "narrow", "full"], default="auto", help="host KV cache: bfloat16 or model dtype"
    )
    ap.add_argument("--max-batch", type=int, default=0, help="host rows per forward pass (0: the host's default)")
    ap.add_argument("--lean-batch", type=int, default=11, help="rows per pass of the memory-saving host run")
    ap.add_argument(
        "--matmul",
        choices=["auto", "packed", "plain"],
        default="auto",
        help="host matmuls: pre-packed oneDNN weights (the host's default on a CPU in float32) or torch's own",
    )
    ap.add_argument(
        "--head",
        choices=["auto", "int8", "float"],
        default="auto",
        help="host output layer: int8 after a rotation (the host's default on a CPU in float32) or float32",
    )
    ap.add_argument("--base", type=Path, help="a real transformers model directory instead of the random GPT-2 shape")
    ap.add_argument("--keep", type=Path, help="build the models here once and reuse them")
    ap.add_argument(
        "--corpus",
        type=Path,
        help="with --base: the host writes with this corpus's vocabulary (compose's `vocabulary: corpus`), "
        "the recipe with the whole vocabulary; a .jsonl file of {text} or a text file",
    )
    ap.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from ensemble.composition.config import GenerationParams

    defaults = GenerationParams()
    args.candidates = defaults.candidates if args.candidates is None else args.candidates
    args.max_new_tokens = defaults.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.role:
        # Every side imports the same libraries first; its model memory is the peak RSS above this point.
        import peft  # noqa: F401
        import transformers  # noqa: F401

        import ensemble.composition.host  # noqa: F401

        libraries = start_memory()
        out = ROLES[args.role](args.root, args)
        out["libraries_rss"] = libraries
        print(json.dumps(out))
        return

    rows_total = args.experts * args.candidates
    with tempfile.TemporaryDirectory(prefix="compose-bench-") as tmp:
        root = args.keep or Path(tmp)
        if not (root / f"expert{args.experts - 1}" / "adapter_config.json").is_file():
            t = time.perf_counter()
            if args.base:
                build_adapters(root, args)
                what = f"{args.experts} random LoRA adapters (q/k/v/o_proj) on {args.base}"
            else:
                build(root, args.experts, args.size)
                what = f"a random {args.size} GPT-2 + {args.experts} LoRA adapters"
            print(f"built {what} in {time.perf_counter() - t:.0f} s")
        threads = args.threads or f"torch's default ({torch.get_num_threads()})"
        print(f"torch threads per process: {threads}; host KV cache: {args.kv}", flush=True)
        res = {
            "one": child("one", root, args),
            "recipe": child("recipe", root, args),
            "host": child("host", root, args),
            "host_lean": child("host", root, args, max_batch=args.lean_batch),
            "host_plain": child("host", root, args, matmul="plain"),
            "host_float_head": child("host", root, args, head="float"),
        }

    mem = {k: (r["peak_rss"] - r["libraries_rss"]) / 2**20 for k, r in res.items()}
    rec = res["recipe"]
    model = str(args.base) if args.base else f"random GPT-2 {args.size} shape"
    print(
        f"\n{model}: {args.experts} sections × {args.steps} steps × {args.max_new_tokens} tokens; host rows per step: "
        f"{args.experts} sections × {args.candidates} candidates = {rows_total}"
    )
    if res["host"].get("vocabulary"):
        allowed, whole = res["host"]["vocabulary"]
        print(f"host vocabulary: {allowed:,} of {whole:,} ids ({args.corpus}); recipe: all")
    cols = [
        ("host", "host" if not args.max_batch else f"host {args.max_batch}r"),
        ("host_lean", f"host {args.lean_batch}r"),
        ("host_plain", "host plain"),
        ("host_float_head", "fp32 head"),
    ]
    print(f"{'':30}{'recipe':>10}" + "".join(f"{label:>11}{'÷recipe':>9}" for _, label in cols))

    def line(name: str, f) -> None:
        a = f(rec, "recipe")
        cells = "".join(f"{f(res[k], k):11.2f}{f(res[k], k) / a:8.2f}×" for k, _ in cols)
        print(f"{name:30}{a:10.2f}{cells}")

    line("document tokens/s", lambda r, k: r["doc_tokens"] / r["wall_s"])
    line("document tokens/CPU-s", lambda r, k: r["doc_tokens"] / r["cpu_s"])
    line("generated tokens/s", lambda r, k: r["tokens"] / r["wall_s"])
    line("generated tokens/CPU-s", lambda r, k: r["tokens"] / r["cpu_s"])
    line("first token, 1st section s", lambda r, k: r["ttft"][0])
    line("first token, mean section s", lambda r, k: sum(r["ttft"]) / len(r["ttft"]))
    line("load s", lambda r, k: r["load_s"])
    line("model memory MiB", lambda r, k: mem[k])
    line("peak RSS MiB", lambda r, k: r["peak_rss"] / 2**20)
    one = max(mem["one"], 1)
    one_rss = res["one"]["peak_rss"]
    print(
        f"\none model generating one section at batch 1: {mem['one']:.0f} MiB model memory, "
        f"{one_rss / 2**20:.0f} MiB peak RSS (libraries alone: {res['one']['libraries_rss'] / 2**20:.0f} MiB)"
    )
    for k, label in cols:
        r = res[k]
        doc = (r["doc_tokens"] / r["wall_s"]) / (rec["doc_tokens"] / rec["wall_s"])
        doc_cpu = (r["doc_tokens"] / r["cpu_s"]) / (rec["doc_tokens"] / rec["cpu_s"])
        speed = (r["tokens"] / r["wall_s"]) / (rec["tokens"] / rec["wall_s"])
        cpu_speed = (r["tokens"] / r["cpu_s"]) / (rec["tokens"] / rec["cpu_s"])
        print(
            f"{label}: document tokens/s {doc:.2f}× the recipe (per CPU-second {doc_cpu:.2f}×; goal ≥ 3×); "
            f"generated tokens/s {speed:.2f}× (per CPU-second {cpu_speed:.2f}×); "
            f"peak memory (process peak RSS) {r['peak_rss'] / one_rss:.2f}× one model (goal ≤ 1.3×), "
            f"model memory above the libraries {mem[k] / one:.2f}×; "
            f"greedy batched = alone for {r['greedy_match']}/{args.experts} experts "
            f"({r['greedy_distinct']} distinct outputs)"
        )


if __name__ == "__main__":
    main()
