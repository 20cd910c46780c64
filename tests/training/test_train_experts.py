"""Training experts on the tiny base: perplexity goes down, artifacts reload with plain PEFT, runs resume."""

import gc
import importlib
import json
import weakref

import pytest
import torch
from training_support import topic
from transformers import AutoModelForCausalLM, TrainerCallback

from ensemble.training.experts import train_experts
from ensemble.training.registry import attach_expert, list_experts, load_expert_passages, read_expert

PROBE = "우리는 가족과 저녁을 함께 이야기했다."


class CaptureLogits(TrainerCallback):
    """Logits of the model as training leaves it, on a fixed input."""

    def __init__(self, tokenizer_dir):
        from transformers import AutoTokenizer

        self.ids = AutoTokenizer.from_pretrained(tokenizer_dir)(PROBE, return_tensors="pt")["input_ids"]
        self.logits = None

    def on_train_end(self, args, state, control, model=None, **kw):
        model.eval()
        with torch.no_grad():
            self.logits = model(input_ids=self.ids).logits.clone()


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated interruption")


class ModelRefs(TrainerCallback):
    """Weak references to each trained model, and how many earlier ones were alive when the next one started."""

    def __init__(self):
        self.refs = []
        self.alive_at_second_start = None

    def on_train_begin(self, args, state, control, model=None, **kw):
        if self.refs:
            gc.collect()
            self.alive_at_second_start = sum(r() is not None for r in self.refs)
        self.refs.append(weakref.ref(model))


class Overflow(TrainerCallback):
    """From training's start, the output layer returns +inf (as an fp16 overflow would) whenever the model runs in
    training mode (`training`) or in evaluation mode."""

    def __init__(self, training):
        self.training = training

    def on_train_begin(self, args, state, control, model=None, **kw):
        def hook(module, inputs, output):
            return output + float("inf") if module.training == self.training else output

        model.get_output_embeddings().register_forward_hook(hook)


class StartedAt(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_train_begin(self, args, state, control, **kw):
        self.steps.append(state.global_step)


def test_lora_lowers_validation_perplexity_and_reloads_with_plain_peft(project, fake_retriever, tiny_base):
    from peft import PeftModel

    topics = project.topics([topic("family")], defaults={"method": "lora", "learning_rate": 1e-2})
    capture = CaptureLogits(tiny_base)
    [m] = train_experts(project.cfg, topics, callbacks=[capture])
    assert m.val_perplexity_after < m.val_perplexity_before * 0.95
    assert m.method == "lora" and m.trainable_params < m.total_params * 0.2
    assert m.data["passages_val"] >= 2 and m.tokens_seen > 0 and m.tokens_per_s > 0
    assert m.peak_memory_bytes > 0
    d = project.root / "work" / "experts" / "family"
    assert (d / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(d.rglob("*.bin")) and not (d / "checkpoints").exists()
    on_disk = json.loads((d / "manifest.json").read_text())
    assert on_disk["base"]["fingerprint"].startswith("sha256:")
    assert on_disk["hyperparameters"]["learning_rate"] == 1e-2
    assert on_disk["hyperparameters"]["trained_dtype"] == on_disk["hyperparameters"]["frozen_dtype"] == "float32"

    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    with torch.no_grad():
        base_logits = base(input_ids=capture.ids).logits
    model = PeftModel.from_pretrained(base, str(d / "adapter")).eval()
    with torch.no_grad():
        reloaded = model(input_ids=capture.ids).logits
    assert torch.allclose(reloaded, capture.logits, atol=1e-5)
    assert not torch.allclose(reloaded, base_logits, atol=1e-3)

    # The dataset is on disk and disjoint; registry helpers read it back.
    passages = json.loads((d / "dataset" / "passages.json").read_text())["passages"]
    assert {p["split"] for p in passages} == {"train", "val"}
    val = set(load_expert_passages(project.cfg, "family", "val"))
    assert val and val.isdisjoint(load_expert_passages(project.cfg, "family", "train"))
    assert [e.name for e in list_experts(project.cfg)] == ["family"]


def test_freeze_saves_only_trained_tensors_and_loads_over_the_base(project, fake_retriever, tiny_base):
    from safetensors.torch import load_file

    topics = project.topics(
        [topic("friends")], defaults={"method": "freeze", "learning_rate": 3e-3, "freeze": {"layers": 1}}
    )
    capture = CaptureLogits(tiny_base)
    [m] = train_experts(project.cfg, topics, callbacks=[capture])
    assert m.val_perplexity_after < m.val_perplexity_before * 0.95
    tensors = load_file(str(m.adapter_path / "trained.safetensors"))
    assert set(tensors) == set(m.trained_tensors)
    assert all(k.startswith(("transformer.h.1.", "transformer.ln_f.")) for k in tensors), sorted(tensors)
    assert m.hyperparameters["frozen_layers"] == 1

    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    model = attach_expert(base, read_expert(project.cfg, "friends")).eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=capture.ids).logits, capture.logits, atol=1e-5)


def test_interrupted_run_resumes_from_checkpoint_and_finished_experts_are_skipped(project, fake_retriever):
    topics = project.topics(
        [topic("family"), topic("village")], defaults={"save_steps": 2, "epochs": 3, "learning_rate": 1e-2}
    )
    with pytest.raises(KeyboardInterrupt):
        train_experts(project.cfg, topics, callbacks=[StopAt(3)])
    d = project.root / "work" / "experts" / "family"
    assert (d / "checkpoints" / "checkpoint-2").is_dir() and not (d / "manifest.json").exists()

    started = StartedAt()
    family, village = train_experts(project.cfg, topics, callbacks=[started])
    assert started.steps == [2, 0]  # family continued from its checkpoint, village started fresh
    assert family.resumed_from == "checkpoint-2" and village.resumed_from is None
    assert family.val_perplexity_after < family.val_perplexity_before

    again = StartedAt()
    assert [m.name for m in train_experts(project.cfg, topics, callbacks=[again])] == ["family", "village"]
    assert again.steps == []  # nothing retrained
    train_experts(project.cfg, topics, only=["village"], force=True, callbacks=[again])
    assert again.steps == [0]


def test_changed_settings_retrain_instead_of_reusing_a_stale_expert(project, fake_retriever):
    topics = project.topics([topic("nature")], defaults={"max_steps": 2})
    first = train_experts(project.cfg, topics)[0]
    topics = project.topics([topic("nature", lora={"r": 4})], defaults={"max_steps": 2})
    second = train_experts(project.cfg, topics)[0]
    assert second.config_hash != first.config_hash and second.hyperparameters["lora"]["r"] == 4
    started = StartedAt()
    train_experts(project.cfg, topics, callbacks=[started])
    assert started.steps == []  # nothing changed: kept
    fake_retriever.passages.append(("new#0", "함께 산 산 산 바다 바다 바다, 계절 계절 봄 봄 봄."))
    third = train_experts(project.cfg, topics)[0]
    assert third.data["dataset_sha256"] != second.data["dataset_sha256"]
    assert "new#0" in (project.root / "work/experts/nature/dataset/passages.json").read_text()


def _one_process_deepspeed(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else accelerate sets torch to one thread per core
    # DeepSpeed compiles a shared-memory all-reduce kernel for CPU on first use (~1 min, cached); one process
    # never reduces across processes, so the tests skip that build.
    monkeypatch.setattr(importlib.import_module("deepspeed.comm.torch"), "build_shm_op", lambda: None)


def test_zero2_deepspeed_on_cpu_single_process(project, fake_retriever, monkeypatch, tiny_base):
    _one_process_deepspeed(monkeypatch)
    topics = project.topics([topic("family"), topic("friends")], defaults={"deepspeed": "zero2", "learning_rate": 1e-2})
    models = ModelRefs()
    family, friends = train_experts(project.cfg, topics, callbacks=[models])  # two DeepSpeed Trainers, one process
    gc.collect()
    assert len(models.refs) == 2 and models.refs[0]() is None, "the first expert's model outlived its training"
    assert models.alive_at_second_start == 0  # released before the next expert loaded its base
    for m in (family, friends):
        assert m.val_perplexity_after < m.val_perplexity_before
        assert m.hyperparameters["deepspeed"] == "zero2"
    m = family
    from peft import PeftModel

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), str(m.adapter_path))


def _saved_dtypes(expert_dir):
    from safetensors import safe_open

    found = set()
    for f in (expert_dir / "adapter").glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            found |= {st.get_slice(k).get_dtype() for k in st.keys()}
    return found


@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_bf16_training_with_and_without_deepspeed_keeps_saves_and_measures_alike(
    project, fake_retriever, monkeypatch, method
):
    # bf16 on a CPU stands in for a GPU: DeepSpeed casts the whole module to bf16 either way.
    defaults = {"method": method, "precision": "bf16", "learning_rate": 1e-2, "epochs": 2, "freeze": {"layers": 1}}
    [plain] = train_experts(project.cfg, project.topics([topic("family")], defaults=defaults))
    plain_saved = _saved_dtypes(project.root / "work" / "experts" / "family")
    _one_process_deepspeed(monkeypatch)
    topics = project.topics([topic("family")], defaults={**defaults, "deepspeed": "zero2"})
    [zero2] = train_experts(project.cfg, topics, force=True)
    zero2_saved = _saved_dtypes(project.root / "work" / "experts" / "family")
    for m in (plain, zero2):
        h = m.hyperparameters
        assert (h["dtype"], h["trained_dtype"], h["frozen_dtype"]) == ("bfloat16", "float32", "bfloat16"), h
        assert m.val_perplexity_after < m.val_perplexity_before
    assert plain_saved == zero2_saved == {"F32"}
    # the same frozen weights, measured the same way before training
    assert zero2.val_perplexity_before == pytest.approx(plain.val_perplexity_before, rel=1e-6)
    assert zero2.val_perplexity_after == pytest.approx(plain.val_perplexity_after, rel=0.05)


def test_conditional_format_trains_with_topic_tags(project, fake_retriever):
    topics = project.topics(
        [topic("family")], defaults={"condition": {"enabled": True, "keep_prob": 0.5}, "max_steps": 3}
    )
    [m] = train_experts(project.cfg, topics)
    assert m.condition["enabled"] and m.condition["format"] == "[TOPIC] {name} [TEXT] {text}"


class WatchBlocks(TrainerCallback):
    """Block 0's weights after each epoch, and the learning rates the optimizer was built with."""

    def __init__(self):
        self.block0 = []
        self.lrs = set()

    def on_train_begin(self, args, state, control, optimizer=None, **kw):
        self.lrs = {g["lr"] for g in optimizer.param_groups}

    def on_epoch_end(self, args, state, control, model=None, **kw):
        self.block0.append(model.transformer.h[0].attn.c_attn.weight.detach().clone())


def test_gradual_unfreezing_and_layerwise_learning_rates(project, fake_retriever, tiny_base):
    freeze = {"layers": 0, "gradual_unfreeze": True, "layer_lr_decay": 0.5}
    topics = project.topics(
        [topic("village")],
        defaults={"method": "freeze", "epochs": 2, "learning_rate": 3e-3, "freeze": freeze},
    )
    watch = WatchBlocks()
    [m] = train_experts(project.cfg, topics, callbacks=[watch])
    base = AutoModelForCausalLM.from_pretrained(tiny_base).transformer.h[0].attn.c_attn.weight
    assert torch.equal(watch.block0[0], base)  # epoch 1: only the top block trained
    assert not torch.equal(watch.block0[1], base)  # epoch 2: block 0 opened
    assert len(watch.lrs) >= 2 and max(watch.lrs) == 3e-3  # lower block at half the rate
    assert "transformer.h.0.attn.c_attn.weight" in m.trained_tensors


class Block0AtEnd(TrainerCallback):
    def __init__(self):
        self.weight = None

    def on_train_end(self, args, state, control, model=None, **kw):
        self.weight = model.transformer.h[0].attn.c_attn.weight.detach().clone()


def _other_base(tiny_base, directory):
    """The tiny base with every weight nudged: another fingerprint, same tokenizer and shapes."""
    import shutil

    shutil.copytree(tiny_base, directory)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(directory, safe_serialization=True)
    (directory / ".ensemble-fingerprint.json").unlink(missing_ok=True)
    return directory


def test_a_checkpoint_of_another_base_is_discarded_and_says_why(project, fake_retriever, tiny_base, tmp_path):
    from test_best_epoch import Lines
    from training_support import Project

    freeze = {"layers": 1}
    topics = project.topics(
        [topic("family")], defaults={"method": "freeze", "freeze": freeze, "save_steps": 2, "epochs": 3}
    )
    with pytest.raises(KeyboardInterrupt):
        train_experts(project.cfg, topics, callbacks=[StopAt(3)])
    assert (project.root / "work/experts/family/checkpoints/checkpoint-2").is_dir()

    other = _other_base(tiny_base, tmp_path / "other-base")
    switched = Project(project.root, other)
    started, block0, log = StartedAt(), Block0AtEnd(), Lines()
    [m] = train_experts(switched.cfg, topics, callbacks=[started, block0], progress=log)
    assert started.steps == [0] and m.resumed_from is None
    assert [line for line in log.lines if "starting over" in line] == [
        "family: starting over instead of resuming its checkpoint, because the base model changed since it was written"
    ]
    frozen = AutoModelForCausalLM.from_pretrained(other).transformer.h[0].attn.c_attn.weight
    assert torch.equal(block0.weight, frozen)  # block 0 is frozen: it must hold the new base's weights


def test_gradual_unfreezing_plans_from_max_steps_and_lists_only_blocks_that_trained(project, fake_retriever, tiny_base):
    freeze = {"layers": 0, "gradual_unfreeze": True}
    topics = project.topics(
        [topic("village")],
        defaults={"method": "freeze", "epochs": 8, "max_steps": 2, "learning_rate": 3e-3, "freeze": freeze},
    )
    [m] = train_experts(project.cfg, topics)
    assert m.steps == 2 and m.epochs <= 1  # max_steps, not epochs, decided the run's length
    from safetensors.torch import load_file

    saved = load_file(str(m.adapter_path / "trained.safetensors"))
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_base).named_parameters())
    assert set(saved) == set(m.trained_tensors)
    assert "transformer.h.0.attn.c_attn.weight" in m.trained_tensors  # the plan opened every block in the 2 steps
    unchanged = [n for n in m.trained_tensors if torch.equal(saved[n], base[n].detach())]
    assert unchanged == []  # nothing is listed as trained that kept the base's weights


@pytest.mark.parametrize(
    "training, message",
    [(True, r"training loss is nan at step 1 in fp32"), (False, r"validation loss is nan in fp32")],
    ids=["training", "validation"],
)
def test_an_overflow_stops_training_with_a_clear_error_and_writes_no_manifest(
    project, fake_retriever, training, message
):
    from ensemble.core.errors import NumericsError

    topics = project.topics([topic("family")], defaults={"learning_rate": 1e-2, "epochs": 1})
    with pytest.raises(NumericsError, match=message + r": the model diverged in fp32; lower learning_rate"):
        train_experts(project.cfg, topics, callbacks=[Overflow(training)])
    assert not (project.root / "work/experts/family/manifest.json").exists()


def test_other_ranks_look_for_a_checkpoint_only_after_rank_0_decided_which_to_keep(
    project, fake_retriever, monkeypatch
):
    from ensemble.training import experts, trainer

    events = []

    class Stop(Exception):
        pass

    def lookup(path):
        events.append("lookup")
        if events.count("lookup") == 2:  # the one inside run_training: the setup is what this test is about
            raise Stop
        return None

    monkeypatch.setattr(trainer, "last_complete_checkpoint", lookup)
    monkeypatch.setattr(trainer, "remove_checkpoints", lambda path: events.append("remove"))
    monkeypatch.setattr(experts, "barrier", lambda: events.append("barrier"))
    with pytest.raises(Stop):
        train_experts(project.cfg, project.topics([topic("family")]))
    assert events == ["lookup", "remove", "barrier", "lookup"]
