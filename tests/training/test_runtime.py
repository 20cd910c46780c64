"""Device and precision decisions, shown on a CPU with a faked torch.cuda: the rank's GPU, no silent DataParallel,
no fp16 for architectures that overflow in it, the base's dtype while an expert trains, finite losses."""

from typing import Any

import pytest
import torch

from ensemble.core.errors import ConfigError, DeviceError, NumericsError
from ensemble.training.dtypes import hold_dtypes, load_dtype, parameter_dtypes
from ensemble.training.runtime import Precision, check_launcher, resolve_precision
from ensemble.training.trainer import check_loss


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has `n` GPUs, with or without bf16; no launcher variables set."""
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)

    def fake(n: int, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")

    return fake


def test_each_launched_process_takes_the_gpu_of_its_local_rank(gpus, monkeypatch):
    gpus(4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_precision("auto").device == "cuda:2"
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.delenv("WORLD_SIZE")
    gpus(1)
    assert resolve_precision("auto").device == "cuda:0"


def test_several_gpus_without_a_launcher_are_refused_for_training_only(gpus):
    gpus(2)
    with pytest.raises(DeviceError, match=r"2 GPUs .*deepspeed --no_local_rank --num_gpus 2.*CUDA_VISIBLE_DEVICES=0"):
        resolve_precision("auto")
    assert resolve_precision("auto", training=False).device == "cuda:0"  # compose and evaluate use one GPU
    check_launcher(1)


def test_fp16_is_refused_for_architectures_that_overflow_in_it(gpus):
    gpus(1, bf16=False)
    assert resolve_precision("auto", model_type="gpt2").fp16
    for model_type in ("gemma2", "gemma3", "gemma3_text"):
        with pytest.raises(ConfigError, match=rf"{model_type} models overflow in fp16.*bf16.*fp32"):
            resolve_precision("fp16", model_type=model_type)
        assert resolve_precision("auto", model_type=model_type).dtype == torch.float32  # a T4: no bf16
    gpus(1, bf16=True)
    assert resolve_precision("auto", model_type="gemma2").bf16


def test_frozen_tensors_are_held_in_the_training_dtype_and_trained_ones_in_fp32():
    from transformers import GPT2Config, GPT2LMHeadModel

    from ensemble.training.adapters import init_adapter
    from ensemble.training.config import TrainParams

    bf16 = Precision("cuda:0", torch.bfloat16, False, True)
    assert load_dtype("lora", bf16) == torch.bfloat16  # LoRA trains no base weight
    assert load_dtype("lora", Precision("cpu", torch.float16, True, False)) == torch.float16
    assert load_dtype("freeze", bf16) == torch.float32  # cast after its trained blocks are chosen
    assert load_dtype("lora", Precision("cuda:0", torch.float32, False, False)) == torch.float32
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    model, _ = init_adapter(GPT2LMHeadModel(config), TrainParams(method="freeze", freeze={"layers": 1}))
    hold_dtypes(model, Precision("cpu", torch.bfloat16, False, True))
    assert parameter_dtypes(model) == {"trained_dtype": "float32", "frozen_dtype": "bfloat16"}
    assert model.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert model.transformer.h[1].mlp.c_fc.weight.dtype == torch.float32
    hold_dtypes(model, Precision("cpu", torch.float32, False, False))
    assert parameter_dtypes(model) == {"trained_dtype": "float32", "frozen_dtype": "float32"}


def test_a_nan_or_infinite_loss_is_an_error_naming_the_precision():
    check_loss(2.5, 3, "fp16")
    with pytest.raises(NumericsError, match=r"nan at step 3 in fp16.*overflowed fp16.*bf16.*fp32"):
        check_loss(float("nan"), 3, "fp16")
    with pytest.raises(NumericsError, match=r"inf at step 7 in bf16.*lower learning_rate"):
        check_loss(float("inf"), 7, "bf16")


def test_a_lora_adapter_over_a_half_precision_base_trains_in_fp32_and_the_manifest_says_so():
    from transformers import GPT2Config, GPT2LMHeadModel

    from ensemble.training.adapters import init_adapter
    from ensemble.training.config import TrainParams

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    base = GPT2LMHeadModel(config).to(torch.bfloat16)
    model, _ = init_adapter(base, TrainParams(method="lora"))
    assert parameter_dtypes(model) == {"trained_dtype": "float32", "frozen_dtype": "bfloat16"}


def _rank_after_barrier(rank: int, port: int, marker: str, seen: Any) -> None:
    import os
    import time
    from pathlib import Path

    from ensemble.training.runtime import barrier

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    if rank == 0:
        time.sleep(1.0)  # rank 0 is slow to decide which checkpoint to keep
        Path(marker).write_text("decided")
    barrier()
    seen[rank] = Path(marker).exists()


@pytest.mark.slow  # two spawned processes import torch: ~15 s
def test_the_barrier_holds_other_ranks_until_rank_0_arrives(tmp_path):
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        seen = manager.dict()
        marker = str(tmp_path / "decided")
        procs = [ctx.Process(target=_rank_after_barrier, args=(r, port, marker, seen)) for r in (0, 1)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join(120)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
        assert [p.exitcode for p in procs] == [0, 0]
        assert dict(seen) == {0: True, 1: True}
