"""Where training runs and in which number format: decided once, from the hardware and the user's setting."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ..core.errors import ConfigError, DeviceError

PrecisionName = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)

# Architectures whose activations exceed fp16's range (65504): in fp16 they turn into inf, then NaN.
FP16_OVERFLOWS = frozenset({"gemma2", "gemma3", "gemma3_text"})


@dataclass(frozen=True)
class Precision:
    device: str  # "cuda:N" (this process's GPU) | "cpu"
    dtype: Any  # torch.dtype the weights are trained/evaluated with under autocast
    fp16: bool
    bf16: bool

    def __iter__(self):  # unpacks as (device, dtype, fp16, bf16)
        return iter((self.device, self.dtype, self.fp16, self.bf16))

    @property
    def name(self) -> str:
        return "fp16" if self.fp16 else "bf16" if self.bf16 else "fp32"


def resolve_precision(precision: str, *, model_type: str | None = None, training: bool = True) -> Precision:
    """`auto`: bf16 on Ampere or newer, fp16 on a GPU without bf16 (T4, V100) unless the architecture
    (`model_type`) overflows in fp16 (then fp32), fp32 on CPU. `training`: several GPUs need a launcher."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda and training:
        check_launcher(torch.cuda.device_count())
    bf16_ok = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    overflows = model_type in FP16_OVERFLOWS
    if precision == "auto":
        precision = ("bf16" if bf16_ok else "fp32" if overflows else "fp16") if cuda else "fp32"
    if precision == "fp16" and overflows:
        raise ConfigError(
            f"{model_type} models overflow in fp16 (their activations pass fp16's largest number and become "
            "inf and NaN); use precision: bf16 on a GPU that has it (Ampere or newer) or fp32",
            key="precision",
        )
    if precision == "fp16" and not cuda:
        raise ConfigError(
            f"fp16 {'training ' if training else ''}needs a CUDA GPU and none is visible; use precision: auto or "
            "fp32 (or bf16)",
            key="precision",
        )
    if precision == "bf16" and cuda and not bf16_ok:
        raise ConfigError(
            f"this GPU ({torch.cuda.get_device_name()}) has no bf16 support; use precision: fp16 or auto",
            key="precision",
        )
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return Precision(cuda_device() if cuda else "cpu", dtype, precision == "fp16", precision == "bf16")


def local_rank() -> int | None:
    """This process's GPU index under torchrun/deepspeed launchers (None when run plainly)."""
    value = os.environ.get("LOCAL_RANK", "")
    return int(value) if value.isdigit() else None


def world_size() -> int:
    value = os.environ.get("WORLD_SIZE", "")
    return int(value) if value.isdigit() else 1


def cuda_device() -> str:
    """The GPU this process owns: its launcher's LOCAL_RANK, else the current one."""
    import torch

    rank = local_rank()
    return f"cuda:{rank if rank is not None else torch.cuda.current_device()}"


def check_launcher(gpus: int) -> None:
    """Refuse several GPUs without a launcher: the Trainer would split every batch across them (DataParallel),
    a larger batch than the settings say, which nothing records."""
    if gpus > 1 and local_rank() is None and "WORLD_SIZE" not in os.environ:
        raise DeviceError(
            f"{gpus} GPUs are visible and no launcher started this run; train on all of them with "
            f"`deepspeed --no_local_rank --num_gpus {gpus} -m ensemble ...` or `torchrun --nproc_per_node {gpus} "
            "-m ensemble ...`, or on one with CUDA_VISIBLE_DEVICES=0"
        )


def barrier() -> None:
    """Wait until every process of a launched run has got here; run as one process, return at once."""
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank() or 0)
        dist.init_process_group("nccl" if cuda else "gloo")
    dist.barrier()


def dist_rank() -> int:
    """This process's rank under torchrun/deepspeed launchers (0 when run plainly)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _proc_status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_memory(device: str) -> None:
    """Start a fresh peak mark: CUDA allocator stats, or on Linux the process's peak RSS (VmHWM)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: the peak then covers the whole process lifetime


def peak_memory(device: str) -> tuple[int, str]:
    """(bytes, what was measured): CUDA tensors since the last reset, else the process's peak RSS."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    hwm = _proc_status("VmHWM")
    if hwm is not None:
        return hwm, "process_peak_rss"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_peak_rss"


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """No HF load/save progress bars or deprecation chatter on stderr while we drive the libraries."""
    import torch
    from transformers.utils import logging as hf_logging

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        # What DeepSpeed would conclude itself, said up front: transformers imports it (where installed) and it
        # would warn on every run that it "was unable to detect" a GPU.
        os.environ["DS_ACCELERATOR"] = "cpu"

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
