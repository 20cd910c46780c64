"""The tokens compose may write with `vocabulary: corpus`: every token the corpus's passages are made of, and
every other token whose text is made only of characters the corpus uses (whitespace always counts).

What it buys: the model writes in the corpus's script and symbols (no markup, emoji or foreign scripts that a
multilingual base offers), and its output layer scores a few thousand ids instead of its whole vocabulary
(Gemma 3: 262k), the largest single cost of a decoding step on a CPU. The set is cached in
work_dir/compose/vocabulary.json, keyed by the corpus files, the passage settings and the base.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config.project import ProjectConfig
from ..core.artifacts import read_json, write_json_atomic
from ..core.errors import ArtifactError

FORMAT = "ensemble-vocabulary/1"
BATCH = 512  # passages tokenized per call


def allowed_ids(
    passages: Iterable[str],
    token_texts: Sequence[str],
    tokenize: Callable[[list[str]], list[list[int]]],
    *,
    special: Iterable[int] = (),
    always: Iterable[int] = (),
) -> list[int]:
    """Ids used by `passages` ∪ ids whose `token_texts` entry is non-empty, decodes whole (no U+FFFD byte
    fragment) and holds only the passages' characters; `special` ids only where listed in `always`."""
    used: set[int] = set()
    chars: set[str] = set()
    batch: list[str] = []

    def flush() -> None:
        for ids in tokenize(batch):
            used.update(ids)
        for text in batch:
            chars.update(text)
        batch.clear()

    for text in passages:
        batch.append(text)
        if len(batch) >= BATCH:
            flush()
    flush()
    excluded = set(special)
    made = {
        i
        for i, t in enumerate(token_texts)
        if t and i not in excluded and "\ufffd" not in t and all(c in chars or c.isspace() for c in t)
    }
    return sorted((used - excluded) | made | set(always))


def tokenizer_allowed_ids(tokenizer: Any, passages: Iterable[str], token_texts: Sequence[str]) -> list[int]:
    """`allowed_ids` for a transformers tokenizer: its special and added tokens are never made of characters,
    its end-of-text token is always allowed."""
    return allowed_ids(
        passages,
        token_texts,
        lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"],
        special=[*tokenizer.all_special_ids, *tokenizer.added_tokens_decoder],
        always=[tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [],
    )


def corpus_signature(cfg: ProjectConfig) -> dict[str, Any]:
    """What the corpus's passages depend on, cheaply: each file's path, size and modification time, and the
    cleaning and passage settings."""
    from ..corpus.load import iter_source_files

    files = []
    for src in iter_source_files(cfg, skip_bad=True):
        st = src.path.stat()
        files.append([str(src.path), st.st_size, st.st_mtime_ns])
    return {
        "files": sorted(files),
        "clean": cfg.clean.model_dump(mode="json"),
        "passages": cfg.passages.model_dump(mode="json"),
    }


def corpus_vocabulary(cfg: ProjectConfig, tokenizer: Any, token_texts: Sequence[str], key: str) -> list[int] | None:
    """`allowed_ids` over the project's corpus, cut into passages as build-index cuts it, for `tokenizer`; `key`
    (`vocabulary_key`) identifies the corpus and base it is cached for. None: the corpus has no passage."""
    path = cfg.work_path / "compose" / "vocabulary.json"
    cached = _cached(path, key)
    if cached is not None:
        return cached
    from ..corpus.passages import passage_texts

    passages = passage_texts(cfg)
    if not passages:
        return None
    ids = tokenizer_allowed_ids(tokenizer, passages, token_texts)
    write_json_atomic(path, {"format": FORMAT, "key": key, "ids": ids})
    return ids


def vocabulary_key(signature: dict[str, Any], base: str) -> str:
    """What a cached vocabulary was computed for: the corpus (`corpus_signature`) and the base's fingerprint."""
    payload = json.dumps({"format": FORMAT, "corpus": signature, "base": base}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _cached(path: Path, key: str) -> list[int] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ArtifactError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    ids = data.get("ids")
    return ids if isinstance(ids, list) and all(isinstance(i, int) for i in ids) else None
