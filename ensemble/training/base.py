"""The shared base model every expert adapts: where it is, loading it, and a fingerprint that pins it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..config.project import ProjectConfig
from ..core.artifacts import sha256_file, write_json_atomic
from ..core.errors import ArtifactError
from .runtime import Precision, quiet_hf, resolve_precision

_FINGERPRINT_CACHE = ".ensemble-fingerprint.json"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def base_dir(cfg: ProjectConfig) -> Path | None:
    """The local directory of the base model, or None for a hub id."""
    ref = cfg.base_model_path
    p = Path(ref)
    if cfg.base_model is None or p.is_absolute() or p.exists():
        return p
    return None


def check_base(cfg: ProjectConfig) -> None:
    """Fail early, with what to do, when the base model is not where the config says."""
    local = base_dir(cfg)
    if local is None:
        return
    if cfg.base_model is None:
        if not (local / "config.json").is_file():
            raise ArtifactError(
                f"no base model: {local} does not hold one; run `ensemble pretrain-base` "
                "or set base_model in ensemble.yaml",
                path=cfg.source,
                key="base_model",
            )
        return
    if not local.exists():
        raise ArtifactError(
            f"base model directory {local} does not exist; fix base_model in ensemble.yaml "
            "or remove it to use the `ensemble pretrain-base` model",
            path=cfg.source,
            key="base_model",
        )
    if not (local / "config.json").is_file():
        raise ArtifactError(
            f"{local} is not a model directory (no config.json); fix base_model in ensemble.yaml",
            path=cfg.source,
            key="base_model",
        )


def base_model_type(cfg: ProjectConfig) -> str | None:
    """The base's architecture (`model_type` in its config.json), or None when it cannot be read yet."""
    from transformers import AutoConfig

    common = {"revision": cfg.base_model_revision, "trust_remote_code": cfg.trust_remote_code}
    try:
        with quiet_hf():
            return AutoConfig.from_pretrained(cfg.base_model_path, **common).model_type
    except (OSError, ValueError):
        return None


def inference_precision(cfg: ProjectConfig, precision: str) -> Precision:
    """`precision` for composing or scoring with this base on this machine (ConfigError where it cannot be)."""
    return resolve_precision(precision, model_type=base_model_type(cfg), training=False)


def load_base_model(cfg: ProjectConfig, *, device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) of the configured base; the tokenizer always has a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_base(cfg)
    ref = cfg.base_model_path
    common = {"revision": cfg.base_model_revision, "trust_remote_code": cfg.trust_remote_code}
    try:
        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(ref, **common)
            model = AutoModelForCausalLM.from_pretrained(ref, use_safetensors=True, dtype=dtype, **common)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(
            f"cannot load base model '{ref}': {first} (weights must be safetensors; hub models must already "
            "be in the local cache, or set trust_remote_code if the model needs it)",
            path=cfg.source,
            key="base_model",
        ) from None
    ensure_pad_token(model, tokenizer)
    set_causal_lm_loss(model)
    if device is not None:
        model.to(device)
    return model, tokenizer


def ensure_pad_token(model: Any, tokenizer: Any) -> None:
    """Batching needs a pad token; reuse EOS when the tokenizer has none (padding is masked out anyway)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def set_causal_lm_loss(model: Any) -> None:
    """Class names like GPT2LMHeadModel leave `loss_type` unset, and transformers warns on every first use."""
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"


def _hub_snapshot(cfg: ProjectConfig) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(cfg.base_model_path, revision=cfg.base_model_revision, local_files_only=True))
    except Exception:
        return None


def base_fingerprint(cfg: ProjectConfig) -> str:
    """A stable hash of the base: config, tokenizer files and every weight file (name, size, sha256).

    Weight hashes are cached beside the model keyed by size and mtime, so large bases are hashed once."""
    local = base_dir(cfg) or _hub_snapshot(cfg)
    if local is None:
        ident = f"hub:{cfg.base_model_path}@{cfg.base_model_revision or 'main'}"
        return "sha256:" + hashlib.sha256(ident.encode()).hexdigest()
    return fingerprint_dir(local)


def fingerprint_dir(local: Path) -> str:
    cache_path = local / _FINGERPRINT_CACHE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    h = hashlib.sha256()
    changed = False
    for name in ["config.json", *_TOKENIZER_FILES]:
        f = local / name
        if f.is_file():
            h.update(f"{name}\0".encode() + f.read_bytes() + b"\0")
    for f in sorted(local.iterdir()):
        if not f.is_file() or not f.name.endswith(_WEIGHT_SUFFIXES):
            continue
        st = f.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}"
        entry = cache.get(f.name)
        if not entry or entry.get("key") != key:
            entry = {"key": key, "sha256": sha256_file(f)}
            cache[f.name] = entry
            changed = True
        h.update(f"{f.name}\0{st.st_size}\0{entry['sha256']}\0".encode())
    if changed:
        try:
            write_json_atomic(cache_path, cache)
        except OSError:
            pass  # a read-only model directory: hash again next time
    return "sha256:" + h.hexdigest()
