"""`vocabulary: corpus`: compose writes only the corpus's tokens and those made of its characters, computes the
output layer over them alone, and a row still depends on nothing but its own prompt, expert and seed."""

from __future__ import annotations

import pytest
import yaml
from compose_kit import CORPUS, SECTIONS
from test_host import GREEDY, PROMPTS, SAMPLED, make_host, rows

from ensemble.composition.run import compose
from ensemble.composition.vocabulary import allowed_ids


def test_allowed_ids_are_the_corpus_tokens_and_the_tokens_made_of_its_characters():
    texts = ["ab", "b", "c", "<s>", "\ufffd", " \n", "ba", "", "a<"]
    pieces = {"ab": [0], "a": [8], "<": [3]}  # a toy tokenizer: the corpus "ab a<" uses ids 0, 8 and 3

    def tokenize(batch):
        return [[i for w in t.replace("<", " < ").split() for i in pieces[w]] for t in batch]

    ids = allowed_ids(["ab a<"], texts, tokenize, special=[3], always=[4])
    # 0 and 8: used; 1, 6: made of a and b; 5: whitespace; 3: special (though used); 4: always; 2: "c" unused
    assert ids == [0, 1, 4, 5, 6, 8]


def test_a_host_allowed_every_id_writes_what_the_whole_vocabulary_writes(tiny_base, expert_store):
    whole = make_host(tiny_base, expert_store)
    limited = make_host(tiny_base, expert_store)
    limited.restrict_vocabulary(range(len(limited.tokenizer)))
    for sampling in (GREEDY, SAMPLED):
        reqs = rows(sampling)  # LoRA, base and freeze rows in one round
        assert [g.text for g in limited.generate(reqs)] == [g.text for g in whole.generate(reqs)]


def _output_layer_expert(tiny_base, out):
    """A freeze expert that changed the output layer (GPT-2 ties it to the input embeddings)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    wte = AutoModelForCausalLM.from_pretrained(tiny_base).transformer.wte.weight.detach()
    save_file({"transformer.wte.weight": (wte + 0.5 * torch.randn_like(wte)).contiguous()}, str(out))
    return out


def test_the_cut_output_layer_writes_what_masking_the_whole_one_writes(tiny_base, expert_store, tmp_path, monkeypatch):
    import ensemble.composition.host as host_mod
    from ensemble.composition.subset_head import SubsetHead
    from ensemble.composition.types import Request

    embed = _output_layer_expert(tiny_base, tmp_path / "embed.safetensors")

    def limited(share):
        monkeypatch.setattr(host_mod, "SUBSET_HEAD_SHARE", share)
        host = make_host(tiny_base, expert_store)
        host._freeze["embed"] = host._load_freeze("embed", embed)
        host._originals["transformer.wte.weight"] = host._params["transformer.wte.weight"].detach().clone()
        vocab = len(host.tokenizer)
        host.restrict_vocabulary([i for i in range(vocab) if i % 3 == 0 or i == host.tokenizer.eos_token_id])
        return host

    cut, masked = limited(0.5), limited(0.0)
    assert isinstance(cut.model.get_output_embeddings(), SubsetHead)
    assert not isinstance(masked.model.get_output_embeddings(), SubsetHead)
    for sampling in (GREEDY, SAMPLED):
        reqs = rows(sampling) + [Request(p, "embed", sampling, 77 + i) for i, p in enumerate(PROMPTS)]
        got = cut.generate(reqs)
        assert [g.text for g in got] == [g.text for g in masked.generate(reqs)]
        assert len({g.text for g in got}) > len(PROMPTS)


def test_a_limited_host_writes_only_its_tokens_and_rows_stay_independent(tiny_base, expert_store):
    host = make_host(tiny_base, expert_store)
    tok = host.tokenizer
    # whole characters only (a byte fragment joins others into any character) and no end-of-text: full rows
    used = {i for p in PROMPTS for i in tok(p, add_special_tokens=False)["input_ids"]}
    ids = {i for i in used if "\ufffd" not in host.token_texts()[i]}
    host.restrict_vocabulary(sorted(ids))
    assert host.vocabulary == (len(ids), host.model.get_output_embeddings().weight.shape[0])
    chars = {c for i in ids for c in host.token_texts()[i]}
    reqs = rows(SAMPLED)
    batched = host.generate(reqs)
    for g in batched:
        assert set(g.text) <= chars | {" "} and g.tokens == SAMPLED.max_new_tokens, g.text
    assert [g.text for g in batched] == [host.generate([r])[0].text for r in reqs]


CORPUS_TOPICS = ("family", "nature")  # the base learned friends' words too: the corpus lacks some it knows


def _written(doc):
    """Each section's text but its prompt (the user's)."""
    return [
        " ".join(x for p in sec.paragraphs for x in p if x != spec["prompt"])
        for sec, spec in zip(doc.sections, SECTIONS, strict=True)
    ]


def _with_corpus(project, vocabulary=None):
    corpus = project.root / "corpus"
    corpus.mkdir(exist_ok=True)
    for topic in CORPUS_TOPICS:
        (corpus / f"{topic}.txt").write_text("\n\n".join(CORPUS[topic]), encoding="utf-8")
    cfg = yaml.safe_load(project.config_path.read_text(encoding="utf-8"))
    project.config_path.write_text(yaml.safe_dump({**cfg, "corpus": ["corpus"]}), encoding="utf-8")
    outline = yaml.safe_load(project.outline().read_text(encoding="utf-8"))
    if vocabulary:
        outline["vocabulary"] = vocabulary
    path = project.root / "outline.yaml"
    path.write_text(yaml.safe_dump(outline, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_compose_writes_only_the_corpus_characters_and_the_setting_is_part_of_each_sections_identity(project):
    outline = _with_corpus(project)
    doc = compose(project.cfg, outline, seed=3)
    corpus_chars = {c for t in CORPUS_TOPICS for p in CORPUS[t] for c in p} | {" ", "\n"}
    for written in _written(doc):
        assert len(written) > 20 and set(written) <= corpus_chars, written
    assert (project.work / "compose" / "vocabulary.json").is_file()
    again = compose(project.cfg, outline, seed=3)
    assert again.generated == [] and again.markdown == doc.markdown  # reused, vocabulary unchanged
    whole = compose(project.cfg, _with_corpus(project, "all"), seed=3)
    assert whole.generated == list(range(1, len(doc.sections) + 1))  # another vocabulary: written again
    assert any(not set(w) <= corpus_chars for w in _written(whole))  # the whole vocabulary strays


def test_a_corpus_that_cannot_be_read_is_an_error_naming_the_setting(project):
    from ensemble.core.errors import ConfigError

    outline = _with_corpus(project)
    for f in (project.root / "corpus").iterdir():
        f.unlink()
    (project.root / "corpus").rmdir()
    with pytest.raises(ConfigError, match=r"vocabulary: corpus reads the corpus.*set vocabulary: all"):
        compose(project.cfg, outline, seed=3)


def test_the_sampler_on_narrow_columns_chooses_what_it_chooses_on_the_masked_vocabulary():
    import torch

    from ensemble.composition.host import RowSampler
    from ensemble.composition.types import Sampling

    vocab, decodable = 60, 56  # a padded vocabulary: ids 56-59 are never written
    columns = torch.tensor([1, 2, 3, 5, 8, 13, 21, 34, 40, 41, 42, 55, 57])
    allowed = torch.zeros(vocab, dtype=torch.bool)
    allowed[columns] = True
    settings = [
        Sampling(8, 1.0, 5, 0.9, 1.3, False, 2),
        Sampling(8, 0.0, 30, 0.95, 1.5, False, 0),
        Sampling(8, 0.7, 4, 1.0, 1.0, False, 3),
    ]  # top-k within the narrow width: both draw from the same k values with the same generator

    def sampler(**kw):
        return RowSampler(settings, [1, 2, 3], [1, 1, 1], None, decodable=decodable, **kw)

    narrow, masked = sampler(columns=columns, vocab_size=vocab), sampler(allowed=allowed)
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[7, 2, 3], [7, 5, 40], [7, 9, 2]])  # 7 and 9: ids without a column
    for _ in range(8):
        scores = torch.randn(3, vocab, generator=gen) * 3
        a = narrow.choose(ids, scores[:, columns], [0, 1, 2])
        b = masked.choose(ids, scores, [0, 1, 2])
        assert a == b
        assert allowed[a].all() and all(i < decodable for i in a)
        ids = torch.cat([ids, torch.tensor(a)[:, None]], dim=1)
    for a, b in zip(narrow.logprobs(), masked.logprobs(), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_project_without_a_corpus_composes_with_the_whole_vocabulary(project):
    doc = compose(project.cfg, project.outline(), seed=3)  # ensemble.yaml names no corpus
    assert all(s.paragraphs for s in doc.sections)
    assert not (project.work / "compose" / "vocabulary.json").exists()
