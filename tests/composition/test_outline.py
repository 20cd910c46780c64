"""outline.yaml: defaults, per-section overrides, and every bad file → one ConfigError with file:line:key."""

from __future__ import annotations

import pytest

from ensemble.composition.config import GenerationParams, load_outline
from ensemble.core.errors import ConfigError

GOOD = """\
title: 함께
defaults:
  target_chars: 500
  temperature: 0.9
sections:
  - heading: 가족
    expert: family
    prompt: 우리 가족은 저녁마다 함께 밥을 먹는다.
  - heading: 친구
    expert: base
    prompt: 친구와 나는 오래 걸었다.
    target_chars: 300
    top_k: 10
"""


def write(tmp_path, text: str):
    p = tmp_path / "outline.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_section_overrides_merge(tmp_path):
    outline = load_outline(write(tmp_path, GOOD))
    first, second = outline.params(0), outline.params(1)
    assert (first.target_chars, first.temperature, first.top_k) == (500, 0.9, 30)
    assert (second.target_chars, second.temperature, second.top_k) == (300, 0.9, 10)
    assert first.context_sentences == 2 and first.candidates == 3 and first.top_p == 0.95


def test_recipe_decoding_with_korean_aware_repetition_defaults():
    p = GenerationParams()
    assert (p.top_k, p.top_p) == (30, 0.95)
    # Milder than the recipe's 2.0 (which punishes particles that must repeat), plus an n-gram ban.
    assert 1.0 < p.repetition_penalty <= 1.2 and p.penalty_exempt_particles and p.no_repeat_ngram_size == 4
    assert GenerationParams(target_chars=1000).step_cap == 70


@pytest.mark.parametrize(
    "text, line, key, words",
    [
        (GOOD.replace("    top_k: 10", "    top_kk: 10"), 13, "sections[1].top_kk", "did you mean 'top_k'"),
        (GOOD.replace("  temperature: 0.9", "  temprature: 0.9"), 4, "defaults.temprature", "unknown key"),
        ("title: 함께\nsections: []\n", 2, "sections", "at least one section"),
        (
            GOOD.replace("target_chars: 300", "target_chars: -300"),
            12,
            "sections[1].target_chars",
            "greater than 0",
        ),
        (
            GOOD.replace("  target_chars: 500", "  target_chars: 0"),
            3,
            "defaults.target_chars",
            "greater than 0",
        ),
        (GOOD.replace("    prompt: 친구와 나는 오래 걸었다.\n", ""), 9, "sections[1].prompt", "required"),
        (
            GOOD.replace("    expert: family", "    expert: '  '"),
            7,
            "sections[0].expert",
            "must not be empty",
        ),
    ],
)
def test_bad_outline_names_file_line_and_key(tmp_path, text, line, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_outline(path)
    assert (e.value.path, e.value.line, e.value.key) == (str(path), line, key)
    assert words in e.value.message


def test_error_points_at_a_section_key(tmp_path):
    outline = load_outline(write(tmp_path, GOOD))
    err = outline.error("no such expert", "sections", 1, "expert")
    assert str(err) == f"{tmp_path / 'outline.yaml'}:10: sections[1].expert: no such expert"
