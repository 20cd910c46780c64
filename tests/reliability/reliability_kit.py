"""Shared pieces of the reliability suite: a small project on disk, a CLI runner with resource limits and a
secret in its environment, snapshots of a directory, and a runner that SIGKILLs a command mid-work."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tinylm import SENTENCE_FRAMES, TOPIC_WORDS, topic_corpus

COMPOSE_SEED = 3
# Present in the environment of every command the suite runs; must never reach a file or stderr.
SECRET = "s3cr3t-Reliability-7f3a9c"
SECRET_ENV = {"ENSEMBLE_ES_USERNAME": "elastic", "ENSEMBLE_ES_PASSWORD": SECRET}

WORDS = {t: TOPIC_WORDS[t] for t in ("family", "friends", "village")}
FRAMES = SENTENCE_FRAMES

# A few optimizer steps per expert, checkpointed every epoch (so a kill mid-training has something to resume).
TRAIN_DEFAULTS = {
    "top_k": 10,
    "epochs": 4,
    "micro_batch_size": 2,
    "grad_accum": 1,
    "block_size": 64,
    "warmup_steps": 0,
    "learning_rate": 0.01,
    "gradient_checkpointing": False,
    "min_val_passages": 2,
    "val_fraction": 0.2,
    "min_passages": 5,  # each topic finds about a dozen passages in this corpus: enough here, so no warning
}
TOPICS = [
    {"name": "family", "title": "가족", "queries": ["가족 저녁", "어머니 아버지"]},
    {"name": "friends", "title": "친구", "queries": ["친구 우정", "학교 편지"]},
]
GEN_DEFAULTS = {
    "target_chars": 120,
    "max_new_tokens": 16,
    "candidates": 1,
    "paragraph_chars": 40,
    "max_steps": 12,
}
SECTIONS = [
    {"heading": "가족의 저녁", "expert": "family", "prompt": "우리 가족은 저녁마다 식탁에 모인다."},
    {"heading": "친구와 함께", "expert": "friends", "prompt": "친구와 나는 학교 운동장에서 만났다."},
]
QUERIES = ["가족 저녁", "친구", "마을 이웃 잔치", "함께 걸으며", "따뜻했다"]


def corpus_texts(per_topic: int = 12, seed: int = 0) -> dict[str, list[str]]:
    """Each topic has six sentences of its own and its documents are 3-4 of them in some order, so an expert
    can learn its topic from the training passages and show it on the held-out ones."""
    return topic_corpus(WORDS, per_topic, seed)


def dump_yaml(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_project(root: Path, base: Path | None) -> Path:
    """ensemble.yaml + topics.yaml + outline.yaml + corpus/ (one .txt per document)."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus"
    corpus.mkdir(exist_ok=True)
    for topic, texts in corpus_texts().items():
        for i, text in enumerate(texts):
            (corpus / f"{topic}-{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    cfg: dict = {"corpus": ["corpus/"], "passages": {"max_chars": 200}, "work_dir": "work"}
    if base is not None:
        cfg["base_model"] = str(base)
    dump_yaml(root / "ensemble.yaml", cfg)
    dump_yaml(root / "topics.yaml", {"theme": "함께", "defaults": TRAIN_DEFAULTS, "topics": TOPICS})
    dump_yaml(root / "outline.yaml", {"title": "함께 사는 이야기", "defaults": GEN_DEFAULTS, "sections": SECTIONS})
    return root


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float
    args: tuple[str, ...] = ()

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        head = f"ensemble {' '.join(self.args)} → {self.code} in {self.seconds:.1f} s"
        return f"{head}\n--- stderr:\n{self.stderr}"


def cli_env(extra: dict | None) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **SECRET_ENV}
    env.pop("COLUMNS", None)
    return {**env, **(extra or {})}


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac_override() -> None:
    """Make root honour file permission bits (chmod 000) in the child: drop CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the capability bounding set, which exec then applies."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@functools.cache
def permissions_enforceable() -> str | None:
    """None when chmod can keep a child process out of a file; else why not."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run(["true"], preexec_fn=_drop_dac_override, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        return f"running as root and cannot drop CAP_DAC_OVERRIDE ({e}): chmod does not stop root"
    return None


def _limits(address_space: int | None, honour_permissions: bool) -> Callable[[], None] | None:
    if address_space is None and not (honour_permissions and os.geteuid() == 0):
        return None

    def apply() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if honour_permissions and os.geteuid() == 0:
            _drop_dac_override()

    return apply


def ensemble(
    *args: str,
    cwd: Path,
    env: dict | None = None,
    timeout: float = 300,
    address_space: int | None = None,
    honour_permissions: bool = False,
    log: list | None = None,
) -> Result:
    """Run `python -m ensemble ARGS` as a user would; `address_space` caps its virtual memory (RLIMIT_AS),
    `honour_permissions` makes chmod bind it even when the tests run as root."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ensemble", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        preexec_fn=_limits(address_space, honour_permissions),
    )
    r = Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, tuple(args))
    if log is not None:
        log.append(r)
    return r


def ok(r: Result) -> Result:
    assert r.code == 0, str(r)
    return r


def is_lock(path: Path) -> bool:
    return path.name.endswith(".lock")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file (size, mtime, sha-free) and directory under `root`, lock files excluded."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        if is_lock(p) or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir",)
        else:
            st = p.stat()
            out[rel] = ("file", st.st_size, st.st_mtime_ns)
    return out


def diff(before: dict, after: dict) -> list[str]:
    changed = [f"+{k}" for k in after if k not in before] + [f"-{k}" for k in before if k not in after]
    changed += [f"~{k}" for k in before if k in after and before[k] != after[k]]
    return sorted(changed)


@dataclass
class Killed:
    code: int
    stderr: str
    killed: bool  # False: it finished before the kill point
    seconds: float
    lines_seen: int = 0
    notes: list[str] = field(default_factory=list)


def run_and_kill(
    *args: str,
    cwd: Path,
    after_lines: int | None = None,
    when: Callable[[], bool] | None = None,
    delay: float = 0.0,
    timeout: float = 300,
) -> Killed:
    """Start `ensemble ARGS`; SIGKILL it `delay` seconds after its `after_lines`-th non-empty stderr line (or
    after `when()` first holds). Nothing is cleaned up: what a crash leaves is what the next run meets."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ensemble", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(None),
    )
    lines: list[str] = []
    trigger = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                lines.append(line)
                if after_lines is not None and len(lines) >= after_lines:
                    trigger.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = t0 + timeout
    while proc.poll() is None and not trigger.is_set() and time.monotonic() < deadline:
        if when is not None and when():
            trigger.set()
            break
        time.sleep(0.01)
    killed = False
    if trigger.is_set() and proc.poll() is None:
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
    if proc.poll() is None and not killed:
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
    proc.wait()
    reader.join(timeout=5)
    return Killed(proc.returncode, "".join(lines), killed, time.monotonic() - t0, len(lines))


def search_results(root: Path, queries=QUERIES) -> dict[str, list[dict]]:
    out = {}
    for q in queries:
        r = ok(ensemble("search", q, "-k", "20", "--json", cwd=root))
        out[q] = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return out


def index_passages(root: Path) -> list[tuple[str, str]]:
    """(id, text) of every passage in the embedded index, read directly with tantivy."""
    import tantivy

    index = tantivy.Index.open(str(root / "work" / "index"))
    index.reload()
    searcher = index.searcher()
    hits = searcher.search(tantivy.Query.all_query(), limit=100_000).hits
    out = []
    for _, addr in hits:
        doc = searcher.doc(addr)
        body = doc.get_first("body")
        out.append((doc.get_first("id"), bytes(body).decode("utf-8") if body is not None else ""))
    return sorted(out)


def index_orphans(root: Path) -> list[str]:
    """Segment files of the embedded index that its meta.json does not reference (a killed writer's)."""
    index = root / "work" / "index"
    meta = json.loads((index / "meta.json").read_text(encoding="utf-8"))
    live = {s["segment_id"].replace("-", "") for s in meta["segments"]}
    segment_files = [p for p in index.iterdir() if len(p.name.split(".")[0]) == 32 and not p.name.startswith(".")]
    return sorted(p.name for p in segment_files if p.name.split(".")[0] not in live)


def tantivy_temp(p: Path) -> bool:
    """A temp file of tantivy's own atomic writes (Rust's tempfile crate: `.tmp` + 6 characters)."""
    return p.parent.name == "index" and p.name.startswith(".tmp") and len(p.name) == 10


def visible_leftovers(root: Path, *, tantivy: bool = True) -> list[str]:
    """Temp or partial files a crash could leave behind (lock files are taken over by the next run).
    `tantivy=False` leaves out tantivy's own temp files (see test_tantivy_temp_files_are_cleaned_up)."""
    bad = []
    for p in root.rglob("*"):
        if not tantivy and tantivy_temp(p):
            continue
        name = p.name
        if name.endswith((".tmp", ".partial", ".part")) or ".tmp." in name or name.startswith(".tmp"):
            bad.append(p.relative_to(root).as_posix())
    return sorted(bad)


def manifests_parse(root: Path) -> list[str]:
    """Every JSON manifest under work/ parses; returns the ones that do not."""
    broken = []
    for p in (root / "work").rglob("*.json"):
        try:
            json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            broken.append(p.relative_to(root).as_posix())
    return broken


def is_pickled(path: Path) -> bool:
    """A pickle (protocol 2+) or a torch.save zip archive (which holds one), by content, whatever its name."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(".pkl") for n in z.namelist())
        except zipfile.BadZipFile:
            return False
    return False
