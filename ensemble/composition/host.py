"""The expert host: one base model in memory, every expert attached to it, batched per-row generation.

- LoRA experts are PEFT adapters on the one base (`PeftModel.from_pretrained` + `load_adapter`); rows of
  different LoRA experts and of the plain base decode together in ONE batch: plain LoRA adapters through
  `lora_rows` (the adapters' weights side by side, one matmul per layer), other PEFT variants through
  PEFT's `adapter_names` (a loop over the adapters in every layer). Both work with GPT-2's Conv1D layers.
- `freeze` experts replaced whole upper blocks, so their rows cannot share a forward pass with other weights.
  Their trained tensors are copied into the base parameters ("swapped in") before their rows run and the
  originals are copied back afterwards. One `generate` call (one chaining round) runs the shared-weights rows
  first, then each freeze expert's rows as one batch: each freeze expert is swapped in at most once per round.
- Rows with the same prompt and expert (a section's candidates) share the prompt's computation: it runs once
  and its KV cache goes to each of those rows (kept once in the narrow cache, copied otherwise) before
  the token loop goes on from the last prompt position.
- On a CPU in float32 the linear layers multiply with weights pre-packed for oneDNN (`packed_linear`; a LoRA
  layer's base together with its adapters' first matrices), and the output layer in int8 after a fixed
  rotation (`int8_head`) where it is wide, else packed too.
- On a CPU attention is the host's own (`row_attention`): a shared prompt's states are read in place by all the
  rows that continue it, and a row's numbers do not depend on its batch on any number of threads.
- The token loop is our own (`decode`), not HF `generate` (so no setting of the base's `generation_config`
  ever applies): each row is sampled by itself with its own seeded generator and its own settings, and a row
  that ends leaves the batch. So a row's text depends on its prompt, expert and seed, not on which other rows
  share the batch (up to float rounding).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import regex as re

from ..core.errors import ArtifactError, NumericsError
from ..training.dtypes import dtype_name
from ..training.registry import quiet_peft
from .activations import fuse_tanh_gelu
from .config import BASE_EXPERT
from .decode import decode
from .kv_cache import cache_keyword, forward_parameters, narrow_cache
from .lora_rows import row_lora_or_none
from .row_attention import use_row_attention
from .types import Generation, Request, Sampling

PEFT_BASE = "__base__"

# Rows per forward pass, by default: as many as keep the KV cache within this share of the model's weights
# (or within the floor, for small models), so composing with every expert stays near the memory of one model
# (benchmarks/compose.py). Wider batches give more tokens/s; `max_batch` trades memory for that.
KV_BUDGET = 0.3
KV_BUDGET_FLOOR = 64 * 2**20
# On a GPU the KV cache may take this share of the memory free when a round starts (the rest is left to the
# activations and logits): a large card batches many more rows than a share of the weights would allow.
KV_FREE_SHARE = 0.5

# The prompt is run through the model this many positions at a time: the activations of a long prompt times
# every row would otherwise be the peak of a whole generation (more than its KV cache on a GPT-2-124M).
PREFILL_CHUNK = 16

# On a CPU a batch is left-padded to a width that is a multiple of this: a row's prompt then starts at the same
# offset modulo PAD_MULTIPLE whatever its neighbours' lengths, so attention sums its positions in the same vector
# lanes as alone, and the padding adds exact zeros. Measured (Gemma 3 270M, AVX2, 64 greedy tokens, rows of 23-57
# prompt tokens): batched = alone to the bit for 5 of 5 rows at 16 (and 32), 4 of 5 at 8 and 4, 0 of 5 unaligned.
PAD_MULTIPLE = 16

# A restricted vocabulary gets its own output layer (a copy of its rows) only below this share of the ids.
SUBSET_HEAD_SHARE = 0.5

# By default the output layer multiplies in int8 (int8_head.py) only where it scores at least this many ids
# (GPT-2's 50k, Llama 3's 128k, Gemma 3's 262k with `vocabulary: all`): below, its matmul is a small share of a
# step (Gemma 3 with a corpus vocabulary scores ~6k ids; int8 measured no faster there) and float32 keeps the
# scores exact.
INT8_MIN_OUTPUTS = 32_768

# On a CPU, a model this small decodes on ONE thread: its matmuls are too small to split, and with two
# threads every one of the thousands of tiny ops per step waits on a thread hand-off; when the other core is
# busy that wait is long (the example's 0.7M-parameter base: 0.35 s per 18-row round on one thread, 20-40 s
# on two shared cores).
SINGLE_THREAD_PARAMS = 50_000_000

# Korean particles and endings a text must repeat: a repetition penalty on them bends the grammar.
EXEMPT_WORDS = frozenset(
    "은 는 이 가 을 를 의 에 에서 에게 께 한테 도 만 와 과 로 으로 랑 이랑 하고 까지 부터 보다 처럼 마다 "
    "이나 나 이며 며 고 서 면 게 지 다 요 죠 니다 습니다".split()
)
_PUNCT_TAIL = re.compile(r"[\p{P}\p{S}\s]+$")


def exempt_token(text: str) -> bool:
    """Is this token a particle/ending (optionally with punctuation) or punctuation only?

    A byte fragment (part of a character's UTF-8 bytes: a byte-level BPE piece, a `<0xEB>` fallback) decodes
    to U+FFFD, a symbol, yet carries letters: it is penalised like any other token."""
    if "\ufffd" in text:
        return False
    core = _PUNCT_TAIL.sub("", text.strip())
    return core == "" or core in EXEMPT_WORDS


class ExpertHost:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        lora: Mapping[str, str | Path] | None = None,
        freeze: Mapping[str, str | Path] | None = None,
        max_batch: int | None = None,
        narrow_kv: bool | None = None,
        threads: int | None = None,
        packed: bool | None = None,
        int8_head: bool | None = None,
    ) -> None:
        import torch

        from .int8_head import int8_available
        from .packed_linear import pack_linears, packing_available

        model.eval()
        fuse_tanh_gelu(model)
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_batch = max_batch  # None: from KV_BUDGET, per generation length
        self._weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.precision = dtype_name(next(model.parameters()).dtype)
        self._kv_per_position = _kv_values_per_position(model.config)
        # None: a bfloat16 KV cache when the model computes in float32 (a CPU), else the model's own dtype.
        self.narrow_kv = narrow_kv if narrow_kv is not None else next(model.parameters()).dtype == torch.float32
        small = sum(p.numel() for p in model.parameters()) < SINGLE_THREAD_PARAMS
        # None: leave torch's setting alone (GPU, or a CPU model big enough to use several cores).
        self.threads = threads if threads is not None else (1 if self.device.type == "cpu" and small else None)
        self._max_positions = _max_positions(model)
        self.pad_multiple = PAD_MULTIPLE if self.device.type == "cpu" else 1
        # Captured before PEFT wraps the model: wrapping keeps these Parameter objects, under new names.
        self._params: dict[str, Any] = dict(model.state_dict(keep_vars=True))
        self.lora_names = sorted(lora or {})
        self.model = _attach_lora(model, lora or {}) if lora else model
        self.model.eval()
        # Pre-packed weights wherever they work (a CPU in float32; see packed_linear.py), unless packed=False.
        self.packed = packed is not False and packing_available(self.device, next(model.parameters()).dtype)
        self._row_lora = row_lora_or_none(self.model, self.lora_names, packed=self.packed) if lora else None
        self._forward_takes = forward_parameters(self.model)
        self._cache_keyword = cache_keyword(self._forward_takes)
        # On a CPU: attention that reads a section's prompt once for all its candidates (row_attention.py).
        self.row_attention = self.device.type == "cpu" and use_row_attention(model)
        self._freeze: dict[str, dict[str, Any]] = {
            name: self._load_freeze(name, Path(path)) for name, path in sorted((freeze or {}).items())
        }
        touched = sorted({n for tensors in self._freeze.values() for n in tensors})
        with torch.no_grad():
            self._originals = {n: self._params[n].detach().clone() for n in touched}
        # Where no freeze expert writes into a weight, its packed copy is all that is kept of it.
        written = {id(self._params[n]) for n in touched}
        self._written = written
        sides = self._row_lora.sides() if self._row_lora is not None else None
        layers = pack_linears(self.model, keep=written, sides=sides) if self.packed else []
        self._packed_by_weight = {id(layer.weight): layer for layer in layers}
        self._active: str | None = None
        self.swaps = 0
        self._texts: list[str] | None = None
        self._exempt: Any = None
        self._exempt_mask(self.model.get_output_embeddings().weight.shape[0])  # once, at load time
        self._base_model = model  # the model PEFT wraps: its output layer is the one to replace
        self._full_head = model.get_output_embeddings()
        self._head: Any = None  # a SubsetHead once the vocabulary is restricted
        self._allowed: Any = None
        # The output layer in int8 where it works (a CPU in float32; see int8_head.py): with int8_head=True
        # whatever its width, by default (None) where it is wide (INT8_MIN_OUTPUTS), never with False.
        self._int8_asked = int8_head is True
        self.int8_head = (
            int8_head is not False
            and isinstance(self._full_head, torch.nn.Linear)
            and int8_available(self.device, next(model.parameters()).dtype)
        )
        self._output: Any = None  # the layer standing in for the output layer (refreshed after a swap)

    # -- experts --------------------------------------------------------------------------------------

    @property
    def experts(self) -> list[str]:
        return [BASE_EXPERT, *self.lora_names, *self._freeze]

    def _load_freeze(self, name: str, path: Path) -> dict[str, Any]:
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device=str(self.device))
        except (OSError, RuntimeError) as e:
            raise ArtifactError(f"cannot read the trained tensors of expert '{name}': {e}", path=path) from None
        out = {}
        for key, t in tensors.items():
            target = self._params.get(key)
            if target is None or tuple(target.shape) != tuple(t.shape):
                raise ArtifactError(
                    f"expert '{name}' holds tensor '{key}' {tuple(t.shape)} that this base model does not "
                    "have with that shape; it was trained on another base: retrain it",
                    path=path,
                )
            out[key] = t.to(target.dtype)
        if not out:
            raise ArtifactError(f"expert '{name}' holds no trained tensors; retrain it", path=path)
        return out

    def _activate(self, name: str | None) -> None:
        """Make the base parameters hold freeze expert `name`'s tensors (None: the base's own)."""
        if name == self._active:
            return
        import torch

        current = self._freeze.get(self._active or "", {})
        target = self._freeze.get(name or "", {})
        with torch.no_grad():
            for key in self._originals:
                if key in target:
                    self._params[key].copy_(target[key])
                elif key in current:
                    self._params[key].copy_(self._originals[key])
        for key in {*current, *target}:
            layer = self._packed_by_weight.get(id(self._params[key]))
            if layer is not None:
                layer.refresh()
        self._active = name
        self.swaps += 1
        if self._output is not None:
            self._output.refresh()  # a freeze expert may hold output-layer weights

    def token_texts(self) -> list[str]:
        """Each id of the tokenizer decoded alone (computed once)."""
        if self._texts is None:
            self._texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        return self._texts

    def _exempt_mask(self, vocab: int) -> Any:
        import torch

        if self._exempt is None or self._exempt.numel() != vocab:
            texts = self.token_texts()[:vocab]
            mask = torch.zeros(vocab, dtype=torch.bool)
            mask[: len(texts)] = torch.tensor([exempt_token(t) for t in texts], dtype=torch.bool)
            self._exempt = mask.to(self.device)
        return self._exempt

    @property
    def vocabulary(self) -> tuple[int, int] | None:
        """(ids that can be written, ids of the output layer) once restricted, else None."""
        if self._allowed is None:
            return None
        return int(self._allowed.sum()), int(self._allowed.numel())

    def restrict_vocabulary(self, ids: Sequence[int]) -> None:
        """From now on only `ids` can be written: the output layer computes their scores alone (the others'
        cost nothing) and the sampler never draws another. A row's text still depends on nothing but its own
        prompt, expert and seed."""
        import torch

        from .subset_head import SubsetHead

        head = self._full_head
        if not isinstance(head, torch.nn.Linear):
            raise ArtifactError(
                "this base's output layer is not a plain linear layer, so compose cannot limit it to the "
                "corpus's tokens; set `vocabulary: all` in the outline"
            )
        vocab = head.weight.shape[0]
        index = torch.tensor(sorted({int(i) for i in ids if 0 <= int(i) < vocab}), dtype=torch.long)
        if len(index) < SUBSET_HEAD_SHARE * vocab:  # else its copy of the rows costs more memory than it saves time
            int8 = self._int8_for(len(index))
            self._head = SubsetHead(head, index.to(self.device), packed=self.packed, int8=int8)
            self._replace_output(self._head, self._head_file_maps())
        allowed = torch.zeros(vocab, dtype=torch.bool)
        allowed[index] = True
        self._allowed = allowed.to(self.device)

    def _head_file_maps(self) -> Sequence[tuple[int, int]]:
        """The file mappings the output layer's weight may give pages back to: none where a freeze expert
        writes into it (its written pages would be lost)."""
        from .packed_linear import file_mappings

        return () if id(self._full_head.weight) in self._written else file_mappings()

    def _replace_output(self, layer: Any, file_maps: Sequence[tuple[int, int]]) -> None:
        """`layer` (holding its own copy of the output layer's rows) computes the scores from now on. The
        original weight is no longer read in full (a tied embedding reads a row per token): its pages in
        `file_maps` (`_head_file_maps`) are dropped."""
        from .packed_linear import forget_file_pages

        self._output = layer
        self._base_model.set_output_embeddings(layer)
        forget_file_pages(layer.weight, file_maps)

    # -- generation -----------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """One chaining round: every request answered; shared-weight rows batched, freeze rows grouped."""
        import torch

        if self.threads is None:
            return self._generate(requests)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._generate(requests)
        finally:
            torch.set_num_threads(before)

    def _int8_for(self, outputs: int) -> bool:
        """Does an output layer scoring `outputs` ids multiply in int8?"""
        return self.int8_head and (self._int8_asked or outputs >= INT8_MIN_OUTPUTS)

    def _int8_output(self) -> None:
        """The whole output layer's int8 copy, built at the first generation: a vocabulary restricted before
        then needs only its own rows' copy (on Gemma 3 the whole layer's takes seconds to build)."""
        from .int8_head import Int8Head

        maps = self._head_file_maps()
        self._replace_output(Int8Head(self._full_head, maps), maps)

    def _packed_output(self) -> None:
        """The whole output layer in float32, packed like the body's layers: torch's own matmul sums a lone row
        in another order than a batch (and differently again as rows leave), so a row's scores would depend on
        its neighbours."""
        from .packed_linear import PackedHead

        maps = self._head_file_maps()
        self._replace_output(PackedHead(self._full_head, maps), maps)

    def output_layer(self) -> Any:
        """The layer that computes the scores, put in place if not yet (at the first generation, so that a
        vocabulary restricted before then needs only its own rows): int8 or packed where they apply."""
        import torch

        if self._output is None and self._int8_for(self._full_head.weight.shape[0]):
            self._int8_output()
        elif self._output is None and self.packed and isinstance(self._full_head, torch.nn.Linear):
            self._packed_output()
        return self._base_model.get_output_embeddings()

    def _generate(self, requests: Sequence[Request]) -> list[Generation]:
        self.output_layer()
        known = set(self.experts)
        for r in requests:
            if r.expert not in known:
                raise ArtifactError(f"expert '{r.expert}' is not loaded; loaded: {', '.join(sorted(known))}")
        groups: dict[tuple[str, int], list[int]] = {}
        for i, r in enumerate(requests):
            weights = r.expert if r.expert in self._freeze else ""
            groups.setdefault((weights, r.sampling.max_new_tokens), []).append(i)
        out: list[Generation | None] = [None] * len(requests)
        for weights, max_new in sorted(groups):
            self._activate(weights or None)
            idx = groups[(weights, max_new)]
            encoded = {i: self._encode(requests[i], max_new) for i in idx}
            width = padded_width(max(len(e.ids) for e in encoded.values()), self.pad_multiple)
            prompts = len({prompt_key(requests[i], encoded[i]) for i in idx})
            limit = self.max_batch or self.rows_within_budget(len(idx), width, max_new, prompts)
            size = -(-len(idx) // -(-len(idx) // limit))  # equal chunks: 21 rows by 8 → 7, 7, 7
            for at in range(0, len(idx), size):
                chunk = idx[at : at + size]
                batch = self._generate_batch([requests[i] for i in chunk], [encoded[i] for i in chunk], max_new)
                for i, g in zip(chunk, batch, strict=True):
                    out[i] = g
        return [g for g in out if g is not None]

    def rows_within_budget(self, rows: int, width: int, new: int, prompts: int | None = None) -> int:
        """How many of `rows` rows (continuing `prompts` distinct prompts, by default one each) of `width`
        prompt positions and `new` new ones fit in one pass with the KV cache within `kv_budget()`."""
        if self._kv_per_position == 0:
            return rows
        per_row = self.kv_bytes(1, (prompts or rows) / rows, width, new)
        return max(1, min(rows, int(self.kv_budget() // per_row)))

    def kv_bytes(self, rows: float, prompts: float, width: int, new: int) -> float:
        """Bytes of the KV cache of `rows` rows continuing `prompts` distinct prompts of `width` positions by
        `new` positions each."""
        compute = next(self.model.parameters()).element_size()
        if self.row_attention and self.narrow_kv:  # each prompt once and each row's own positions, widened
            return self._kv_per_position * compute * (prompts * width + rows * new)
        stored = 2 if self.narrow_kv else compute
        return self._kv_per_position * stored * rows * (width + new)

    def kv_budget(self) -> float:
        """Bytes the KV cache of one pass may take: on a GPU a share of its free memory now (the weights and
        freeze experts' tensors already resident are not free), else a share of the weights."""
        if self.device.type == "cuda":
            return KV_FREE_SHARE * cuda_free_bytes(self.device)
        return max(KV_BUDGET * self._weight_bytes, KV_BUDGET_FLOOR)

    def restore_base(self) -> None:
        self._activate(None)

    def _adapter_name(self, expert: str) -> str:
        return expert if expert in self.lora_names else PEFT_BASE

    def _encode(self, request: Request, max_new: int) -> Encoded:
        """The start token, the request's prefix and as much of its prompt's end as the context leaves room
        for: a long prompt loses its oldest text, never its start token or prefix."""
        tok = self.tokenizer
        # A prompt starts a passage: experts were trained on passages that open with the start token (where it
        # is not the end-of-text token) and follow an end-of-text token (packed).
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        head = ([start] if start is not None else []) + self._ids(request.prefix)
        room = max(1, self._max_positions - max_new - len(head))
        return Encoded(head + self._ids(request.prompt)[-room:], len(head))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _generate_batch(self, reqs: list[Request], encoded: list[Encoded], max_new: int) -> list[Generation]:
        import torch

        tok = self.tokenizer
        width = padded_width(max(len(e.ids) for e in encoded), self.pad_multiple)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        pads = [width - len(e.ids) for e in encoded]
        input_ids = torch.tensor([[pad_id] * p + e.ids for p, e in zip(pads, encoded, strict=True)], device=self.device)
        mask = torch.tensor(
            [[0] * p + [1] * len(e.ids) for p, e in zip(pads, encoded, strict=True)], device=self.device
        )
        vocab = self.model.get_output_embeddings().weight.shape[0]
        needs_exempt = any(r.sampling.repetition_penalty != 1 and r.sampling.penalty_exempt_particles for r in reqs)
        sampler = RowSampler(
            [r.sampling for r in reqs],
            [r.seed for r in reqs],
            [p + e.head for p, e in zip(pads, encoded, strict=True)],
            self._exempt_mask(vocab) if needs_exempt else None,
            decodable=min(vocab, len(tok)),
            precision=self.precision,
            allowed=self._allowed if self._head is None else None,
            columns=self._head.index if self._head is not None else None,
            vocab_size=vocab,
        )
        stored = torch.bfloat16 if self.narrow_kv else next(self.model.parameters()).dtype
        cache = narrow_cache(stored, width + max_new, split=self.row_attention)
        # Candidates of one section share their prompt and expert: its positions are computed once per
        # distinct (prompt, expert) and handed to every row that shares them; the token loop does the last one.
        # With the row attention a lone row's prompt is handed over too, so that it attends as a shared one does.
        owner: dict[tuple[str, tuple[int, ...]], int] = {}
        rows_of = [owner.setdefault(prompt_key(r, e), len(owner)) for r, e in zip(reqs, encoded, strict=True)]
        share = len(owner) < len(reqs) or self.row_attention
        experts = [r.expert for r in reqs]
        # Our prompts start with the end-of-text token, which is also the pad token: transformers then warns
        # about padding without a mask on steps where it passes none because nothing is padded.
        quiet = logging.getLogger("transformers.modeling_utils")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with torch.inference_mode():
                if share and width > 1:
                    firsts = [rows_of.index(u) for u in range(len(owner))]
                    self._prefill(cache, input_ids[firsts, :-1], mask[firsts], [experts[i] for i in firsts])
                    cache.batch_select_indices(torch.tensor(rows_of, device=self.device))
                elif width > 1:
                    self._prefill(cache, input_ids[:, :-1], mask, experts)
                with self._experts(experts) as select:

                    def forward(step_ids: Any, step_mask: Any, live: Sequence[int]) -> Any:
                        positions = step_mask.sum(-1, keepdim=True) - 1
                        return self._forward(cache, step_ids, step_mask, positions, select(live)).logits[:, -1]

                    new = decode(
                        forward, sampler.choose, cache.batch_select_indices, input_ids, mask, max_new, tok.eos_token_id
                    )
        finally:
            quiet.setLevel(level)
        logps = sampler.logprobs()
        return [generation(tok, row, lp) for row, lp in zip(new, logps, strict=True)]

    @contextlib.contextmanager
    def _experts(self, experts: Sequence[str]) -> Iterator[Callable[[Sequence[int]], dict[str, Any]]]:
        """Within this block `select(live)` readies a forward pass over the rows `live` (positions in
        `experts`), row j with expert experts[live[j]], and returns the keyword arguments that pass needs."""
        if self._row_lora is not None:
            row_lora = self._row_lora
            with row_lora.rows(experts):
                selected = list(range(len(experts)))

                def select(live: Sequence[int]) -> dict[str, Any]:
                    nonlocal selected
                    if list(live) != selected:
                        selected = list(live)
                        row_lora.select([experts[i] for i in selected])
                    return {}

                yield select
        elif self.lora_names:
            yield lambda live: {"adapter_names": [self._adapter_name(experts[i]) for i in live]}
        else:
            yield lambda live: {}

    def _prefill(self, cache: Any, ids: Any, mask: Any, experts: list[str]) -> None:
        """Run `ids` (left-padded; `mask` may run one position further) through the model into `cache`,
        PREFILL_CHUNK positions at a time, each numbered from the mask (padding skipped) as the token loop
        numbers the rest. On a CPU a chunk leaves out the rows that are all padding there (a short prompt's
        first chunks): their states would only be masked, and with the padding aligned to whole chunks a row's
        states are the same bits either way (as a row prefilled alone is)."""
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        pads = (mask == 0).sum(-1).tolist()
        skip = self.pad_multiple % PREFILL_CHUNK == 0
        with self._experts(experts) as select:
            for start in range(0, ids.shape[1], PREFILL_CHUNK):
                end = min(start + PREFILL_CHUNK, ids.shape[1])
                live = [i for i, p in enumerate(pads) if p < end or not skip]
                cache.only(live if len(live) < len(pads) else None, len(pads))
                kwargs = select(live)
                self._forward(cache, ids[live, start:end], mask[live, :end], positions[live, start:end], kwargs)
        cache.only(None, len(pads))

    def _forward(self, cache: Any, ids: Any, mask: Any, positions: Any, adapters: dict[str, Any]) -> Any:
        """One forward pass of `ids` (positions numbered `positions`) into `cache`, only the last position's
        scores computed where the model can skip the others; `adapters`: from `_experts`' `select`."""
        extra: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in self._forward_takes else {}
        if "position_ids" in self._forward_takes:
            extra["position_ids"] = positions
        if self.row_attention:
            extra["row_cache"] = cache
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            use_cache=True,
            **{self._cache_keyword: cache},
            **extra,
            **adapters,
        )


def padded_width(longest: int, multiple: int) -> int:
    """The batch's width: the longest row rounded up to a multiple of `multiple`."""
    return -(-longest // multiple) * multiple


class Encoded(NamedTuple):
    ids: list[int]
    head: int  # the leading ids that are not text: the start token and the request's prefix


def prompt_key(request: Request, encoded: Encoded) -> tuple[str, tuple[int, ...]]:
    """Rows with the same key share one prompt's computation and KV states (and the KV budget counts it once)."""
    return request.expert, tuple(encoded.ids)


def generation(tokenizer: Any, new_ids: Sequence[int], logprobs: Sequence[float]) -> Generation:
    """A row's continuation as the chain takes it: its ids up to and with the end-of-text token (which ends it)
    and their log-likelihoods, the text without that token, and where each id ends in the text (so a candidate
    can be ranked by the tokens of what it keeps)."""
    eos = tokenizer.eos_token_id
    finished = eos is not None and eos in new_ids
    n = list(new_ids).index(eos) + 1 if finished else len(new_ids)
    text_ids = list(new_ids[: n - 1] if finished else new_ids[:n])
    lp = list(logprobs[:n])
    text = tokenizer.decode(text_ids, skip_special_tokens=True)
    ends = [len(tokenizer.decode(text_ids[: k + 1], skip_special_tokens=True)) for k in range(len(text_ids))]
    return Generation(
        text=text,
        mean_logprob=float(sum(lp) / len(lp)) if lp else float("-inf"),
        tokens=n,
        finished=finished,
        token_logprobs=tuple(lp),
        token_ends=tuple(ends + [len(text)] if finished else ends),
    )


def cuda_free_bytes(device: Any) -> int:
    """Free memory of a GPU: what the driver reports free plus what torch's allocator holds unused."""
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _kv_values_per_position(config: Any) -> int:
    """Numbers one row's KV cache holds per position (keys and values over all layers); 0 when unknown."""
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if not (isinstance(layers, int) and isinstance(hidden, int) and isinstance(heads, int) and heads > 0):
        return 0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return layers * 2 * kv_heads * head_dim


def _max_positions(model: Any) -> int:
    cfg = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return 2048


def _attach_lora(model: Any, lora: Mapping[str, str | Path]) -> Any:
    from peft import PeftModel

    names = sorted(lora)
    try:
        with quiet_peft():
            peft_model = PeftModel.from_pretrained(
                model, str(lora[names[0]]), adapter_name=names[0], is_trainable=False
            )
            for name in names[1:]:
                peft_model.load_adapter(str(lora[name]), adapter_name=name, is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"cannot load a LoRA adapter: {first}; retrain the expert") from None
    return peft_model


class RowSampler:
    """Chooses each row's next id by itself, from the scores of the last position.

    Per row: repetition penalty over the row's text from `starts[r]` on (padding, start token and prefix are
    not text; particles optionally exempt), no-repeat n-gram ban over the same, then greedy (temperature 0) or
    temperature → top-k → top-p → a draw from the row's own generator, among the first `decodable` ids (a
    model's vocabulary may be padded past its tokenizer's). It also records each chosen token's
    log-probability under the unmodified scores. Scores holding NaN or +inf (the model overflowed its number
    format) raise NumericsError naming `precision`, the dtype the model computes in.

    The scores hold every id of the vocabulary, of which `allowed` (a mask) may be written; or, with `columns`,
    only those ids (column j: id columns[j], out of `vocab_size`): all the work then stays that narrow.
    """

    def __init__(
        self,
        sampling: Sequence[Sampling],
        seeds: Sequence[int],
        starts: Sequence[int],
        exempt: Any,
        *,
        decodable: int | None = None,
        precision: str = "float32",
        allowed: Any = None,
        columns: Any = None,
        vocab_size: int | None = None,
    ) -> None:
        import torch

        self.precision = precision
        self.sampling = list(sampling)
        self.starts = list(starts)
        self.exempt = exempt
        self.decodable = decodable
        self.allowed = allowed
        self.columns = columns
        self.vocab_size = vocab_size
        self._column_of: Any = None  # id -> its column, -1 where it has none
        self._column_ids: list[int] = []
        self._columns_by_id: dict[int, int] = {}
        if columns is not None:
            if vocab_size is None:
                raise ValueError("columns need vocab_size")
            self._column_ids = columns.tolist()
            self._column_of = torch.full((vocab_size,), -1, dtype=torch.long, device=columns.device)
            self._column_of[columns] = torch.arange(len(self._column_ids), device=columns.device)
            self._columns_by_id = {i: c for c, i in enumerate(self._column_ids)}
        self.generators = [torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF) for s in seeds]
        self._logprobs: list[list[float]] = [[] for _ in self.sampling]

    def logprobs(self) -> list[list[float]]:
        return self._logprobs

    def choose(self, input_ids: Any, scores: Any, rows: Sequence[int]) -> list[int]:
        """The next id of each of `rows`, whose ids so far and scores are the lines of `input_ids` and
        `scores`, in that order. `scores` is spent: it is written in place."""
        import torch

        x = scores.float()
        b, width = x.shape
        sampling = [self.sampling[r] for r in rows]
        # Each pass below reads the whole (rows × vocabulary) block, so there are few: one log-sum-exp for the
        # log-probabilities (NaN and +inf both make it fail `< inf`), the penalties in place and one top-k.
        if self.allowed is not None:  # also undoes a soft cap, which turns the output layer's -inf into -cap
            x = x.masked_fill(~self.allowed[:width], float("-inf"))
        log_total = torch.logsumexp(x, dim=-1)
        broken = ~(log_total < float("inf"))
        unpenalized = self._penalize(input_ids, x, rows)
        self._mask_undecodable(x)
        self._ban_ngrams(input_ids, x, rows)
        # The whole batch's candidates in one pass on the device and one copy to the host; only the draws,
        # each from its row's own generator over at most top_k values, go row by row.
        k = max((self._k(s, width) for s in sampling if s.temperature != 0), default=0)
        if k:
            values, index = torch.topk(x, k, dim=-1)
            best = values[:, 0]
        else:
            values, index, best = x[:, :0], x[:, :0].long(), x.amax(dim=-1)
        # A greedy row takes the first id of the highest score, which top-k's order does not promise.
        greedy = x.argmax(dim=-1) if any(s.temperature == 0 for s in sampling) else best.long()
        finite = best > float("-inf")
        flags, greedy, values, index = torch.stack([finite, broken]).cpu(), greedy.cpu(), values.cpu(), index.cpu()
        finite, broken = flags
        if bool(broken.any()):
            raise NumericsError(overflow_message(int(broken.sum()), b, self.precision))
        choice = []  # columns of `scores`
        for j, (r, s) in enumerate(zip(rows, sampling, strict=True)):
            if not finite[j]:
                choice.append(0)
            elif s.temperature == 0:
                choice.append(int(greedy[j]))
            else:
                choice.append(self._draw(values[j, : self._k(s, width)], index[j], s, self.generators[r]))
        # Each chosen id's log-probability under the unmodified scores: the penalised ones are put back (an id
        # masked or banned is chosen only by a row with no finite score).
        if unpenalized is not None:
            x.index_put_(unpenalized[:2], unpenalized[2])
        at = torch.tensor(choice, device=x.device)[:, None]
        chosen = (x.gather(1, at)[:, 0] - log_total).tolist()
        for r, lp in zip(rows, chosen, strict=True):
            self._logprobs[r].append(lp)
        return choice if self.columns is None else [self._column_ids[c] for c in choice]

    @staticmethod
    def _k(s: Sampling, vocab: int) -> int:
        return s.top_k if s.top_k and s.top_k < vocab else vocab

    def _mask_undecodable(self, x: Any) -> None:
        """Ids past the tokenizer (a padded vocabulary) are never chosen."""
        if self.decodable is None:
            return
        if self.columns is None:
            if self.decodable < x.shape[1]:
                x[:, self.decodable :] = float("-inf")
        elif self._column_ids and self._column_ids[-1] >= self.decodable:
            x[:, self.columns >= self.decodable] = float("-inf")

    def _ban_ngrams(self, input_ids: Any, x: Any, rows: Sequence[int]) -> None:
        """No-repeat n-grams: each row's banned next tokens set to -inf in place, in one indexed write."""
        if not any(self.sampling[r].no_repeat_ngram_size for r in rows):
            return
        ids_list = input_ids.tolist()
        column = (lambda i: i) if self.columns is None else self._columns_by_id.get
        lines, cols = [], []
        for j, r in enumerate(rows):
            n = self.sampling[r].no_repeat_ngram_size
            if n:
                banned = [column(i) for i in _banned(ids_list[j][self.starts[r] :], n)]
                banned = sorted(c for c in banned if c is not None)
                lines += [j] * len(banned)
                cols += banned
        if lines:
            x[lines, cols] = float("-inf")

    def _penalize(self, input_ids: Any, scores: Any, rows: Sequence[int]) -> Any:
        """The repetition penalty, written into `scores`; returns the (lines, columns) written and their
        values before, or None where no row is penalised."""
        import torch

        sampling = [self.sampling[r] for r in rows]
        pens = [s.repetition_penalty for s in sampling]
        if all(p == 1 for p in pens):
            return None
        b, length = input_ids.shape
        dev = scores.device
        pos = torch.arange(length, device=dev)[None, :]
        valid = pos >= torch.tensor([self.starts[r] for r in rows], device=dev)[:, None]
        use_exempt = torch.tensor([s.penalty_exempt_particles for s in sampling], device=dev)[:, None]
        if self.exempt is not None:
            valid &= ~(self.exempt[input_ids] & use_exempt)
        cols = input_ids
        if self._column_of is not None:  # an id with no column cannot be written, so has nothing to penalise
            cols = self._column_of[input_ids]
            valid &= cols >= 0
            cols = cols.clamp(min=0)
        p = torch.tensor(pens, device=dev, dtype=scores.dtype)[:, None]
        g = scores.gather(1, cols)
        penalized = torch.where(g < 0, g * p, g / p)
        # Only the text's positions are written; an id repeated writes the same value each time.
        lines, cols = torch.arange(b, device=dev)[:, None].expand_as(cols)[valid], cols[valid]
        scores[lines, cols] = penalized[valid]
        return lines, cols, g[valid]

    @staticmethod
    def _draw(values: Any, index: Any, s: Sampling, gen: Any) -> int:
        """temperature → top-p over the row's top-k `values` (descending) → a draw from its generator."""
        import torch

        probs = torch.softmax(values / s.temperature, dim=-1)
        if s.top_p < 1:
            before = torch.cumsum(probs, dim=-1) - probs
            probs = torch.where(before < s.top_p, probs, probs.new_zeros(()))
        pick = torch.multinomial(probs, 1, generator=gen)
        return int(index[int(pick)])


def overflow_message(rows: int, batch: int, precision: str) -> str:
    advice = (
        "this base overflows in float16: compose on a GPU with bf16 (Ampere or newer) or on the CPU "
        "(CUDA_VISIBLE_DEVICES= , float32)"
        if precision == "float16"
        else "the model or an expert's weights hold NaN or infinity; retrain the expert or check the base"
    )
    where = f"{rows} of {batch} rows (computed in {precision})"
    return f"the model's next-token scores hold NaN or infinity in {where}: {advice}"


def _banned(tokens: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in `tokens`."""
    if len(tokens) < n:
        return set()
    if n == 1:
        return set(tokens)
    prefix = tokens[len(tokens) - n + 1 :]
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i : i + n - 1] == prefix}
