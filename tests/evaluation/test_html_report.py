"""`ensemble evaluate --html`: the page's content (no browser), the page in headless Chromium (renders without
console errors, the screenshot is not blank), and the CLI option on a built project."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from eval_kit import topical_text

from ensemble.composition.provenance import ParagraphSources, Provenance, Source
from ensemble.evaluation.html_report import (
    HtmlContext,
    TrainingCurve,
    render_html,
    section_targets,
    training_curve,
)
from ensemble.evaluation.report import OverallReport, Ranked, Report, SectionReport
from ensemble.training.registry import ExpertManifest

ENV = {"OMP_NUM_THREADS": "1"}
HEADINGS = ['가족 <b>이야기</b> & "식탁"', "Cost $5 and $10", "친구와 바다"]
EXPERTS = ["family", "friends", "nature"]
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _section(i: int, heading: str, expert: str | None, *, missing: bool = False) -> SectionReport:
    scores = {"family": 3.0 - i, "friends": 1.0 + i, "nature": 0.5 * i}
    ranking = [Ranked(e, s) for e, s in sorted(scores.items(), key=lambda kv: -kv[1])]
    return SectionReport(
        number=i + 1,
        heading=heading,
        expert=expert,
        chars=600 + 150 * i,
        sentences=8,
        paragraphs=2,
        tokens=120,
        distinct_1=0.7,
        distinct_2=0.9 - 0.1 * i,
        rep_2=0.05,
        rep_4=0.02 * i,
        repeated_sentences=0.0,
        copy_rate=None if missing else 0.1 * i,
        copied_ngrams=None if missing else i,
        ngrams=113,
        longest_copy=None,
        longest_copy_chars=None,
        longest_copy_text=None,
        expert_ranking=ranking,
        best_expert=ranking[0].expert,
        own_expert_rank=[r.expert for r in ranking].index(expert) + 1 if expert else None,
        perplexity=None if missing else 150.0 - 20 * i,
        expert_perplexity=None if missing else 120.0 - 20 * i,
        perplexity_tokens=None if missing else 200,
    )


def sample_report() -> Report:
    sections = [
        _section(0, HEADINGS[0], "family"),
        _section(1, HEADINGS[1], "friends", missing=True),
        _section(2, HEADINGS[2], None),
    ]
    overall = OverallReport(
        sections=3,
        chars=sum(s.chars for s in sections),
        sentences=24,
        paragraphs=6,
        tokens=360,
        distinct_1=0.7,
        distinct_2=0.85,
        rep_2=0.05,
        rep_4=0.02,
        repeated_sentences=0.0,
        copy_rate=0.05,
        longest_copy=None,
        longest_copy_chars=None,
        longest_copy_text=None,
        own_expert_first=1,
        sections_with_expert=2,
        mean_own_expert_rank=1.5,
        perplexity=140.0,
        expert_perplexity=110.0,
    )
    return Report(
        document="essay.md", title="함께 사는 <이야기>", outline="outline.yaml", overall=overall, sections=sections
    )


def manifest(name: str, history: list[tuple[float, float]], best: float | None) -> ExpertManifest:
    return ExpertManifest(
        name=name,
        method="lora",
        base={"name_or_path": "base", "fingerprint": "x"},
        val_perplexity_before=300.0,
        val_perplexity_after=history[-1][1],
        val_history=[{"step": 10 * (i + 1), "epoch": e, "perplexity": p} for i, (e, p) in enumerate(history)],
        best_epoch=best,
        improved=True,
    )


def sample_context() -> HtmlContext:
    curves = [
        training_curve(manifest("family", [(1, 180.0), (2, 120.0), (3, 125.0)], 2.0)),
        training_curve(manifest("friends", [(0.5, 250.0), (1, 200.0)], None)),
    ]
    return HtmlContext(targets=[800, 800, None], curves=curves)


PROVENANCE = Provenance(
    own_dataset_share=0.5,
    paragraphs=[
        ParagraphSources(
            "어머니는 <script>alert(1)</script> 저녁을 차렸다.",
            [
                Source("family-03#2", "family-03", "부엌 & 식탁", 7.25, 4, True),
                Source("nature-01#0", "nature-01", "nature-01", 3.1, 2, False),
            ],
        ),
        ParagraphSources("두 번째 문단.", []),
    ],
)


def sample_page(provenance: bool = True) -> str:
    report = sample_report()
    if provenance:
        report = replace(report, sections=[replace(report.sections[0], provenance=PROVENANCE), *report.sections[1:]])
    return render_html(report.to_dict(), sample_context())


# --- the page's content ----------------------------------------------------------------------------------------


def test_page_has_every_heading_escaped_a_chart_each_and_nothing_remote():
    page = sample_page()
    for heading in HEADINGS:
        assert f">{_escaped(heading)}<" in page  # in the section table, as text
    assert "<b>이야기</b>" not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # provenance text is escaped too
    # length, ratios, perplexity, heat map, one curve per expert
    assert page.count("<svg") == 3 + 1 + 2 == page.count("</svg>")
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:image/png;base64,)""", page)  # nothing outside it
    assert "Content-Security-Policy" in page and "<!DOCTYPE html>" in page


def test_page_shows_provenance_only_when_present():
    with_prov = sample_page(provenance=True)
    assert "Where each paragraph came from" in with_prov
    assert "family-03#2" in with_prov and "부엌 &amp; 식탁" in with_prov and "50.0%" in with_prov
    assert 'title="부엌 &amp; 식탁 (family-03#2); nature-01 (nature-01#0)"' in with_prov  # sources on hover
    assert "Where each paragraph came from" not in sample_page(provenance=False)


def test_page_without_experts_or_outline_says_so():
    data = sample_report().to_dict()
    for s in data["sections"]:
        s["expert_ranking"] = s["perplexity"] = s["expert_perplexity"] = None
    page = render_html(data)
    assert "relevance was not measured" in page and "no trained experts." in page
    assert "perplexity was not measured" in page
    assert page.count("<svg") == 2


def test_training_curve_from_a_manifest():
    c = training_curve(manifest("family", [(1, 180.0), (2, 120.0)], 2.0))
    assert c == TrainingCurve("family", None, [1.0, 2.0], [180.0, 120.0], 300.0, 2.0, True)
    old = ExpertManifest(
        name="old",
        method="freeze",
        base={"name_or_path": "b", "fingerprint": "x"},
        val_perplexity_before=90.0,
        val_perplexity_after=60.0,
    )
    assert training_curve(old).perplexities == [60.0]


def test_section_targets_follow_the_outline_like_the_experts_do():
    assert section_targets([500, 900], ["a", "b"], ["x", "y"]) == [500, 900]  # same count: by position
    assert section_targets([500, 900, 700], ["a", "b", "b"], ["b", "a"]) == [None, 500]  # else by unique heading


def _escaped(text: str) -> str:
    import html

    return html.escape(text)


# --- the page in a real browser ---------------------------------------------------------------------------------

# Runs before the page's Content-Security-Policy (which forbids scripts) takes effect: records errors and
# policy violations into the DOM, for --dump-dom to read back.
RECORDER = """<script>
window.__errors = [];
function __note(msg) {
  window.__errors.push(String(msg));
  document.documentElement.setAttribute("data-errors", JSON.stringify(window.__errors));
}
window.addEventListener("error", function (e) {
  __note(e.message || ("resource: " + (e.target && e.target.outerHTML)));
}, true);
window.addEventListener("securitypolicyviolation", function (e) {
  __note("csp: " + e.violatedDirective + " " + e.blockedURI);
});
window.addEventListener("load", function () {
  document.documentElement.setAttribute("data-loaded", String(document.querySelectorAll("svg").length));
});
</script>"""


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _console_errors(stderr: str) -> list[str]:
    """Chromium's log lines for the page's console messages (all logged as INFO; the page has no script of its
    own, so any message is an error: a blocked load, a policy violation, a parse failure)."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


def _colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").resize((200, 300))
        return len(small.getcolors(maxcolors=1 << 16) or [])


@pytest.mark.slow
def test_page_renders_in_headless_chromium_without_errors(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it as root)")
    page = sample_page().replace("<head>\n", "<head>\n" + RECORDER + "\n", 1)
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    url = path.as_uri()

    dom = _run_browser(browser, tmp_path / "profile-dom", "--virtual-time-budget=3000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-loaded="(\d+)"', dom.stdout)
    assert loaded and int(loaded.group(1)) == 6, dom.stdout[:500]  # the recorder ran: every chart is in the DOM
    errors = re.search(r'data-errors="([^"]*)"', dom.stdout)
    assert errors is None, errors.group(1) if errors else ""
    assert _console_errors(dom.stderr) == []

    shot = tmp_path / "report.png"
    r = _run_browser(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,2000", url)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    assert _console_errors(r.stderr) == []
    assert _colours(shot) > 50  # charts drawn, not a blank page (a blank one has a single colour)


# --- the CLI option ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_writes_the_page_and_keeps_stdout_for_the_report(project, cli):
    doc = project.document([("가족 이야기", topical_text("family")), ("친구 이야기", topical_text("friends"))])
    outline = project.outline([("가족 이야기", "family"), ("친구 이야기", "friends")])
    out = project.root / "out" / "report.html"
    args = ["-c", str(project.config_path), "evaluate", str(doc), "--outline", str(outline), "--no-perplexity"]
    r = cli(*args, "--json", "--html", str(out), cwd=project.root, env=ENV)
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)  # stdout still holds the JSON and nothing else
    page = out.read_text(encoding="utf-8")
    for s in data["sections"]:
        assert f">{_escaped(s['heading'])}<" in page
    assert page.count("<svg") == 2 + 1 + 3  # no perplexity chart (not measured); three trained experts: three curves
    assert "perplexity was not measured" in page
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left beside it
    table = cli(*args, "--html", str(out), cwd=project.root, env=ENV)
    assert table.code == 0 and "overall" in table.stdout and "<svg" not in table.stdout
