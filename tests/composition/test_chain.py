"""Sentence chaining as control flow, with a scripted stand-in for the model."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from ensemble.composition.chain import ChainSection, SectionState, complete_sentences, run_chain
from ensemble.composition.config import GenerationParams
from ensemble.composition.types import Generation, Request
from ensemble.text.sentences import split_many

NOUNS = (
    "가족 친구 마을 이웃 바다 산 강 숲 바람 봄 여름 가을 겨울 시장 골목 학교 편지 식탁 저녁 아침 "
    "할머니 동생 어머니 아버지 잔치 도서관 운동장 동료 공장 밥상 명절 김치 된장 나무 꽃 하늘 별 달"
).split()
VERBS = "만났다 기다렸다 이야기했다 바라보았다 걸었다 웃었다 노래했다 나누었다 지켰다 그렸다".split()


def split(texts: list[str]) -> list[list[str]]:
    return split_many(texts, backend="rules")


def sentence(rng: random.Random) -> str:
    a, b, c = rng.sample(NOUNS, 3)
    return f"{a}와 {b}는 {c}에서 함께 {rng.choice(VERBS)}."


class Fake:
    """Answers each request from its own seed (like the real host): two sentences and an unfinished tail."""

    def __init__(self, make: Callable[[Request, random.Random], str] | None = None, logprob=None) -> None:
        self.calls: list[list[Request]] = []
        self.make = make or (lambda req, rng: f" {sentence(rng)} {sentence(rng)} 그리고 우리는")
        self.logprob = logprob or (lambda req, rng: -rng.random())

    def __call__(self, requests: Sequence[Request]) -> list[Generation]:
        self.calls.append(list(requests))
        out = []
        for r in requests:
            rng = random.Random(r.seed)
            text = self.make(r, rng)
            out.append(Generation(text, self.logprob(r, rng), tokens=len(text.split()), finished=False))
        return out


def section(index=0, prompt="우리 가족은 저녁마다 식탁에 모인다.", expert="family", **params) -> ChainSection:
    return ChainSection(index, f"절 {index}", expert, prompt, GenerationParams(**params))


def test_section_stops_at_first_sentence_boundary_past_target():
    sec = section(target_chars=120, paragraph_chars=10_000)
    st = run_chain([sec], Fake(), split)[0]
    sents = st.sentences
    assert st.done and not st.capped
    assert st.chars >= 120
    assert len(" ".join(sents[:-1])) < 120  # one sentence fewer would not reach the target
    assert sents[0] == "우리 가족은 저녁마다 식탁에 모인다."  # the prompt opens the section
    assert all(s.endswith(".") for s in sents) and not any("그리고 우리는" in s for s in sents)


def test_new_paragraph_every_paragraph_chars():
    st = run_chain([section(target_chars=300, paragraph_chars=60)], Fake(), split)[0]
    assert len(st.paragraphs) >= 3
    for p in st.paragraphs[:-1]:
        text = " ".join(p)
        assert len(text) >= 60 and len(" ".join(p[:-1])) < 60


def test_next_prompt_is_the_last_context_sentences():
    fake = Fake()
    sec = section(target_chars=200, context_sentences=2, candidates=1)
    st = run_chain([sec], fake, split)[0]
    assert fake.calls[0][0].prompt == "우리 가족은 저녁마다 식탁에 모인다."
    written = []
    for call in fake.calls[1:]:
        prompt = call[0].prompt
        assert len(split([prompt])[0]) == 2
        written.append(prompt)
    assert all(p in " ".join(st.sentences) for p in written)


def test_heading_and_condition_prefix_in_prompt():
    fake = Fake()
    sec = ChainSection(
        0,
        "가족",
        "family",
        "첫 문장이다.",
        GenerationParams(target_chars=40, prefix_heading=True),
        prompt_prefix="[TOPIC] family [TEXT]",
    )
    run_chain([sec], fake, split)
    # The prefix travels apart from the text, so the host can cut a long text without losing it.
    assert fake.calls[0][0].prefix == "[TOPIC] family [TEXT]"
    assert fake.calls[0][0].prompt == "가족\n첫 문장이다."


@pytest.mark.parametrize("mark", ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u200e"])
def test_zero_width_characters_the_model_emits_never_reach_the_document(mark):
    fake = Fake(
        lambda req, rng: (
            f" 동생은{mark} 마당에서 강아지와{mark}{mark} 뛰어놀았다. 할머니는 부엌에서 된장을 끓이셨다.{mark}"
        )
    )
    st = run_chain([section(target_chars=60)], fake, split)[0]
    assert st.sentences[1:] == ["동생은 마당에서 강아지와 뛰어놀았다.", "할머니는 부엌에서 된장을 끓이셨다."]


def test_unfinished_prompt_is_completed_by_the_model():
    fake = Fake(lambda req, rng: " 함께 밥을 먹는다. " + sentence(rng))
    st = run_chain([section(prompt="시작한다. 우리 가족은 저녁마다", target_chars=60)], fake, split)[0]
    assert fake.calls[0][0].prompt == "시작한다. 우리 가족은 저녁마다"
    assert st.sentences[:2] == ["시작한다.", "우리 가족은 저녁마다 함께 밥을 먹는다."]


def test_all_sections_advance_together_with_candidates_in_one_batch():
    fake = Fake()
    secs = [
        section(0, expert="family", candidates=3),
        section(1, expert="friends", candidates=2),
        section(2, expert="base", candidates=1),
    ]
    states = run_chain(secs, fake, split)
    first = fake.calls[0]
    assert [r.expert for r in first] == ["family"] * 3 + ["friends"] * 2 + ["base"]
    assert len({r.seed for r in first}) == 6
    assert all(s.done for s in states.values())
    # A finished section leaves the batch; the others keep going.
    assert all(len(c) <= 6 for c in fake.calls)


def test_best_candidate_by_loglikelihood_among_those_passing_guards():
    copied = "우리 집 저녁 식탁에는 오래된 규칙이 하나 있다고 모두 알았다."
    texts = {
        0: f" {copied}",
        1: " 동생은 마당에서 강아지와 뛰어놀았다.",
        2: " 할머니는 부엌에서 된장을 끓이셨다.",
    }
    lps = {0: -0.1, 1: -2.0, 2: -1.0}  # the copy is the most likely, then candidate 2

    def make(req, rng):
        return texts[_candidate(req)]

    def lp(req, rng):
        return lps[_candidate(req)]

    class Copy:
        def rejects(self, s: str) -> bool:
            return s == copied

    fake = Fake(make, lp)
    sec = section(target_chars=25, candidates=3)
    st = run_chain([sec], fake, split, copy_guards={0: Copy()})[0]
    assert st.sentences[-1] == texts[2].strip()
    assert st.rejected["copy"] == 1


@pytest.mark.parametrize("weight", [0.0, 0.5, 5.0])
def test_topic_steering_trades_likelihood_for_the_sections_own_topic(weight):
    texts = {
        0: " 동료들은 공장에서 늦게까지 일했다.",  # the likeliest, and another expert's topic
        1: " 어머니는 식탁에 저녁을 차리셨다.",  # this section's own topic
        2: " 하늘에는 별과 달이 떠 있었다.",
    }
    lps = {0: -1.0, 1: -1.3, 2: -1.2}
    margins = {texts[0].strip(): -0.2, texts[1].strip(): 0.2, texts[2].strip(): 0.0}
    asked: list[str] = []

    def topic(text: str) -> float:
        asked.append(text)
        return margins[text]

    fake = Fake(lambda req, rng: texts[_candidate(req)], lambda req, rng: lps[_candidate(req)])
    sec = section(target_chars=25, candidates=3, topic_weight=weight)
    st = run_chain([sec], fake, split, topics={0: topic})[0]
    # weight 0.5: -1.0 - 0.1 = -1.1 still beats -1.3 + 0.1 = -1.2; weight 5: -1.3 + 1.0 beats -1.0 - 1.0
    expected = {0.0: 0, 0.5: 0, 5.0: 1}[weight]
    assert st.sentences[-1] == texts[expected].strip()
    assert bool(asked) == (weight > 0)  # weight 0 never analyzes a candidate


def test_topic_steering_decides_between_close_candidates():
    texts = {
        0: " 동료들은 공장에서 늦게까지 일했다.",
        1: " 어머니는 식탁에 저녁을 차리셨다.",
        2: " 하늘에는 별이 떴다.",
    }
    lps = {0: -1.0, 1: -1.05, 2: -3.0}
    margins = {texts[0].strip(): -0.1, texts[1].strip(): 0.1, texts[2].strip(): 0.5}
    fake = Fake(lambda req, rng: texts[_candidate(req)], lambda req, rng: lps[_candidate(req)])
    st = run_chain([section(target_chars=25, candidates=3, topic_weight=1.0)], fake, split, topics={0: margins.get})
    assert st[0].sentences[-1] == texts[1].strip()  # -1.05 + 0.1 beats -1.0 - 0.1 and -3.0 + 0.5


def _candidate(req: Request) -> int:
    from ensemble.composition.chain import row_seed

    for j in range(3):
        if row_seed(0, 0, 0, j) == req.seed:
            return j
    raise AssertionError("unexpected seed")


def test_guard_rejections_are_retried_counted_and_then_moved_on():
    fake = Fake(lambda req, rng: " 우리 가족은 저녁마다 식탁에 모인다. " + sentence(rng))
    sec = section(target_chars=60, candidates=2, max_retries=2)
    st = run_chain([sec], fake, split)[0]
    # Every candidate repeats the opening: rounds 1-3 fail (2 retries allowed), then it moves on, and since
    # nothing of any candidate passes the repeat guard, no sentence is taken: the section ends at its cap.
    assert st.rejected["repeat"] >= 6 and st.retry_rounds >= 3 and st.moved_on >= 1
    assert st.sentences.count("우리 가족은 저녁마다 식탁에 모인다.") == 1


def test_moving_on_keeps_the_passing_sentences_of_the_best_candidate():
    fake = Fake(lambda req, rng: f" {sentence(rng)} 우리 가족은 저녁마다 식탁에 모인다.")
    st = run_chain([section(target_chars=60, candidates=2, max_retries=0)], fake, split)[0]
    assert st.moved_on >= 1 and st.chars >= 60
    assert st.sentences.count("우리 가족은 저녁마다 식탁에 모인다.") == 1


def test_hard_step_cap_ends_a_section_that_never_completes_a_sentence():
    fake = Fake(lambda req, rng: " 그리고 우리는 함께")  # never a complete sentence
    st = run_chain([section(target_chars=500, max_steps=5, candidates=2)], fake, split)[0]
    assert st.done and st.capped and st.step == 5
    assert st.rejected["incomplete"] == 10 and st.sentences == ["우리 가족은 저녁마다 식탁에 모인다."]
    assert len(fake.calls) == 5


def test_default_step_cap_scales_with_target():
    fake = Fake(lambda req, rng: " 그리고")
    st = run_chain([section(target_chars=100, candidates=1)], fake, split)[0]
    assert st.capped and st.step == 20 + 100 // 20


def test_resume_from_saved_states_gives_the_same_text():
    secs = [section(0, target_chars=150), section(1, expert="friends", target_chars=250)]
    full = run_chain(secs, Fake(), split, seed=7)

    saved: dict[int, dict] = {}

    def stop_after_two(states, advanced):
        for i in advanced:
            saved[i] = states[i].to_dict()
        if states[0].step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_chain(secs, Fake(), split, seed=7, on_round=stop_after_two)
    resumed = run_chain(secs, Fake(), split, seed=7, states={i: SectionState.from_dict(d) for i, d in saved.items()})
    assert {i: s.paragraphs for i, s in resumed.items()} == {i: s.paragraphs for i, s in full.items()}


def test_a_sections_text_does_not_depend_on_other_sections_it_shares_no_sentence_with():
    alone = run_chain([section(1, expert="friends", target_chars=200)], Fake(), split, seed=3)[1]
    together = run_chain(
        [section(0, target_chars=80), section(1, expert="friends", target_chars=200)], Fake(), split, seed=3
    )[1]
    assert alone.paragraphs == together.paragraphs


def test_seed_changes_the_text():
    a = run_chain([section(target_chars=100)], Fake(), split, seed=1)[0]
    b = run_chain([section(target_chars=100)], Fake(), split, seed=2)[0]
    assert a.paragraphs != b.paragraphs


def test_complete_sentences_drop_fragments_and_stray_punctuation():
    assert complete_sentences([". .", "... 남았다.", "우리는 간다.", "미완성"], model_ended=False) == [
        "남았다.",
        "우리는 간다.",
    ]
    assert complete_sentences(["우리는 간다"], model_ended=True) == ["우리는 간다"]
    assert complete_sentences(["첫 문장.", "깨진 \ufffd 문장.", "셋째 문장."], model_ended=False) == ["첫 문장."]
    assert complete_sentences(["우리는 간"], model_ended=True) == []


def test_a_sentence_written_in_another_section_is_a_repeat():
    shared = "할머니와 동생은 시장에서 함께 웃었다."
    own = {0: " 바다와 별은 하늘에서 함께 노래했다.", 1: " 나무와 꽃은 숲에서 함께 기다렸다."}

    def make(req, rng):
        return f" {shared}" if req.seed % 2 else own[req.expert == "friends"]

    def lp(req, rng):
        return -0.1 if req.seed % 2 else -3.0  # the shared sentence is always the likelier candidate

    secs = [
        section(0, prompt=shared, target_chars=40, candidates=4),
        section(1, expert="friends", prompt="친구와 나는 학교 운동장에서 만났다.", target_chars=40, candidates=4),
    ]
    st = run_chain(secs, Fake(make, lp), split)
    assert shared not in st[1].sentences  # section 0 opened with it
    assert st[1].sentences[-1] == own[1].strip() and st[1].rejected["repeat"] >= 1


def test_sentences_of_reused_sections_are_repeats_too():
    reused = "할머니와 동생은 시장에서 함께 웃었다."
    fake = Fake(
        lambda req, rng: f" {reused}" if req.seed % 2 else " 나무와 꽃은 숲에서 함께 기다렸다.", lambda r, g: 0.0
    )
    st = run_chain([section(target_chars=40, candidates=4)], fake, split, written=[reused])[0]
    assert reused not in st.sentences and st.rejected["repeat"] >= 1


def _tokens(text: str, lps: list[float]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """A token per word (with its leading space), each with its log-likelihood and where it ends in `text`."""
    ends, at = [], 0
    for word in text.split(" ")[1:]:
        at += 1 + len(word)
        ends.append(at)
    assert len(ends) == len(lps) and at == len(text)
    return tuple(lps), tuple(ends)


def test_candidates_are_ranked_by_what_they_keep_not_by_the_dropped_tail():
    sure = " 가족과 친구는 시장에서 함께 웃었다. 그리고 우리는"  # a likely sentence, then an unlikely tail
    plain = " 바다와 산은 숲에서 함께 걸었다. 그리고 우리는"
    rows = {
        0: (sure, [-0.2, -0.2, -0.2, -0.2, -0.2, -6.0, -6.0]),  # whole mean -1.86, kept mean -0.2
        1: (plain, [-1.0] * 7),  # whole mean -1.0, kept mean -1.0
    }

    def generate(requests):
        out = []
        for r in requests:
            text, lps = rows[_candidate(r) % 2]
            token_lps, ends = _tokens(text, lps)
            mean = sum(lps) / len(lps)
            out.append(Generation(text, mean, len(lps), False, token_logprobs=token_lps, token_ends=ends))
        return out

    st = run_chain([section(target_chars=30, candidates=2)], generate, split)[0]
    assert st.sentences[1] == "가족과 친구는 시장에서 함께 웃었다."


def test_kept_loglikelihood_counts_the_tokens_of_the_kept_text_only():
    from ensemble.composition.chain import kept_logprob

    text = " 가족은 웃었다. 그리고"
    lps, ends = _tokens(text, [-1.0, -2.0, -9.0])
    gen = Generation(text, -4.0, 3, False, token_logprobs=lps, token_ends=ends)
    assert kept_logprob(gen, len("가족은웃었다.")) == -1.5
    assert kept_logprob(gen, len("가족은웃었다.그리고")) == -4.0
    assert kept_logprob(Generation(text, -4.0, 3, False), 3) == -4.0  # no per-token figures: the whole mean


def test_a_sentence_with_html_markup_is_rejected():
    tagged = " 그는 <b>편지</b>를 다시 읽었다."
    fake = Fake(lambda req, rng: tagged if req.seed % 2 else f" {sentence(rng)}", lambda r, g: 0.0)
    st = run_chain([section(target_chars=60, candidates=4)], fake, split)[0]
    assert st.rejected["markup"] >= 1
    assert not any("<" in s for s in st.sentences) and len(st.sentences) > 1
