"""`ensemble evaluate --html`: the evaluation report as one self-contained HTML file.

Everything is inline: the charts are SVG drawn by matplotlib (text kept as text, so the reader's fonts render
any script), the styles sit in the page, there is no script and nothing is fetched (a Content-Security-Policy
forbids it). Sections: the metrics per section as bar charts (length against the outline's target, distinct-2,
rep-4 and copy rate, perplexity under the base and the section's expert), a section × expert relevance heat
map, each trained expert's validation curve from its manifest, and, when the report carries provenance, each
paragraph with the corpus passages it is closest to.

`render_html` is pure (a report's dict form in, a page out); `load_context` is the one part that reads disk
(the outline's targets, the experts' manifests).
"""

from __future__ import annotations

import html
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.project import ProjectConfig
from ..training.registry import ExpertManifest

LABEL_CHARS = 18  # a section's label on a chart axis: its number and the start of its heading
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
COLORS = {"written": "#4c72b0", "target": "#c7d3e6", "distinct_2": "#55a868", "rep_4": "#c44e52"}
COLORS |= {"copy_rate": "#8172b2", "perplexity": "#4c72b0", "expert_perplexity": "#dd8452", "curve": "#4c72b0"}


@dataclass(frozen=True)
class TrainingCurve:
    """One expert's validations: perplexity by epoch, the base's perplexity on the same data, the kept one."""

    expert: str
    title: str | None
    epochs: list[float]
    perplexities: list[float]
    base_perplexity: float
    best_epoch: float | None  # None: the last validation was kept
    improved: bool | None


@dataclass(frozen=True)
class HtmlContext:
    """What the page shows beyond the report itself."""

    targets: list[int | None] = field(default_factory=list)  # per section: the outline's target_chars
    curves: list[TrainingCurve] = field(default_factory=list)


# --- what the report lacks: targets and training curves -------------------------------------------------------


def training_curve(m: ExpertManifest) -> TrainingCurve:
    """The curve in a manifest: `val_history` (step, epoch, perplexity), else the older per-epoch list, else the
    single after-training figure."""
    history = [h for h in m.val_history if h.get("perplexity") is not None]
    if history:
        epochs = [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]
        ppl = [float(h["perplexity"]) for h in history]
    elif m.val_perplexity_by_epoch:
        epochs = [float(i + 1) for i in range(len(m.val_perplexity_by_epoch))]
        ppl = list(m.val_perplexity_by_epoch)
    else:
        epochs, ppl = [float(m.epochs or 1)], [m.val_perplexity_after]
    return TrainingCurve(
        expert=m.name,
        title=m.title,
        epochs=epochs,
        perplexities=ppl,
        base_perplexity=m.val_perplexity_before,
        best_epoch=m.best_epoch,
        improved=m.improved,
    )


def section_targets(
    targets_by_position: Sequence[int], outline_headings: Sequence[str], headings: Sequence[str]
) -> list[int | None]:
    """Each document section's target length, matched to the outline as `evaluate` matches experts: by position
    when the counts agree (headings may have been edited), else by a heading that occurs once in the outline."""
    if len(outline_headings) == len(headings):
        return [int(t) for t in targets_by_position]
    by_heading: dict[str, list[int]] = {}
    for h, t in zip(outline_headings, targets_by_position, strict=True):
        by_heading.setdefault(h, []).append(t)
    return [by_heading[h][0] if len(by_heading.get(h, [])) == 1 else None for h in headings]


def load_context(cfg: ProjectConfig | None, outline_path: Path | None, headings: Sequence[str]) -> HtmlContext:
    """The outline's per-section targets and every trained expert's curve (none where there is nothing)."""
    targets: list[int | None] = [None] * len(headings)
    if outline_path is not None:
        from ..composition.config import load_outline

        outline = load_outline(outline_path)
        per_position = [outline.params(i).target_chars for i in range(len(outline.sections))]
        targets = section_targets(per_position, [s.heading for s in outline.sections], headings)
    curves: list[TrainingCurve] = []
    if cfg is not None:
        from ..training.registry import list_experts

        curves = [training_curve(m) for m in list_experts(cfg)]
    return HtmlContext(targets=targets, curves=curves)


# --- charts: matplotlib figures as inline SVG --------------------------------------------------------------------


def _plain(text: str) -> str:
    """Text for a matplotlib label: `$` would start mathtext."""
    return text.replace("$", r"\$")


def section_label(number: int, heading: str) -> str:
    short = heading if len(heading) <= LABEL_CHARS else heading[: LABEL_CHARS - 1] + "…"
    return _plain(f"{number}. {short}")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    return fig


def svg_of(fig: Any) -> str:
    """The figure as an `<svg>` element for inline HTML: text as text, no XML preamble, no namespace URIs,
    no metadata; ids are content hashes, so a repeated id inside one page repeats the same definition."""
    import matplotlib

    buf = io.StringIO()
    rc = {"svg.fonttype": "none", "svg.hashsalt": "ensemble-report"}
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")  # the browser has the glyphs
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    return svg.strip()


def _bars(ax: Any, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]]) -> None:
    """Grouped bars, one group per label; a missing value gets a dash at the baseline instead of a bar."""
    width = 0.8 / max(1, len(series))
    for j, (name, color, values) in enumerate(series):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(labels))]
        ax.bar(xs, [v or 0.0 for v in values], width, label=name, color=color)
        for x, v in zip(xs, values, strict=True):
            if v is None:
                ax.text(x, 0, "–", ha="center", va="bottom", fontsize=8, color="#666666")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))


def _labels(sections: Sequence[Mapping[str, Any]]) -> list[str]:
    return [section_label(s["number"], s["heading"]) for s in sections]


def _width(n: int) -> float:
    return min(14.0, 4.0 + 0.9 * n)


def length_chart(sections: Sequence[Mapping[str, Any]], targets: Sequence[int | None]) -> str:
    fig = _figure(_width(len(sections)), 3.2)
    ax = fig.add_subplot()
    series = [("written", COLORS["written"], [float(s["chars"]) for s in sections])]
    if any(t is not None for t in targets):
        series.append(("target", COLORS["target"], [float(t) if t is not None else None for t in targets]))
    _bars(ax, _labels(sections), series)
    ax.set_ylabel("characters")
    ax.set_title("Length vs target", fontsize=10)
    return svg_of(fig)


def ratio_chart(sections: Sequence[Mapping[str, Any]]) -> str:
    fig = _figure(_width(len(sections)), 3.2)
    ax = fig.add_subplot()
    keys = [("distinct-2", "distinct_2"), ("rep-4", "rep_4"), ("copy rate", "copy_rate")]
    _bars(ax, _labels(sections), [(name, COLORS[k], [s.get(k) for s in sections]) for name, k in keys])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.set_title("Diversity, repetition and copying", fontsize=10)
    return svg_of(fig)


def perplexity_chart(sections: Sequence[Mapping[str, Any]]) -> str | None:
    """None when no section was scored (no base model, or --no-perplexity)."""
    if all(s.get("perplexity") is None and s.get("expert_perplexity") is None for s in sections):
        return None
    fig = _figure(_width(len(sections)), 3.2)
    ax = fig.add_subplot()
    keys = [("under the base", "perplexity"), ("under its expert", "expert_perplexity")]
    _bars(ax, _labels(sections), [(name, COLORS[k], [s.get(k) for s in sections]) for name, k in keys])
    ax.set_ylabel("perplexity (lower: more fluent)")
    ax.set_title("Perplexity", fontsize=10)
    return svg_of(fig)


def relevance_matrix(sections: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[float | None]]]:
    """Experts (the report's order where it has one, else first seen) and each section's score for each."""
    experts: list[str] = []
    for s in sections:
        for r in s.get("expert_ranking") or []:
            if r["expert"] not in experts:
                experts.append(r["expert"])
    rows = []
    for s in sections:
        scores = {r["expert"]: r["score"] for r in s.get("expert_ranking") or []}
        rows.append([scores.get(e) for e in experts])
    return experts, rows


def relevance_heatmap(sections: Sequence[Mapping[str, Any]]) -> str | None:
    """Rows: sections; columns: experts; colour: the score as a share of the row's best (which expert the
    section reads like); each cell shows the raw BM25 score; the section's own expert is outlined."""
    experts, rows = relevance_matrix(sections)
    if not experts:
        return None
    shares = []
    for row in rows:
        best = max((v for v in row if v is not None), default=0.0)
        shares.append([(v / best) if v is not None and best > 0 else 0.0 for v in row])
    fig = _figure(min(14.0, 3.5 + 1.1 * len(experts)), 1.2 + 0.45 * len(sections))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(shares, cmap="Blues", vmin=0, vmax=1, edgecolors="white", linewidth=1)  # vector cells
    ax.invert_yaxis()
    ax.set_xticks([j + 0.5 for j in range(len(experts))], [_plain(e) for e in experts], fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(sections))], _labels(sections), fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            text = "–" if v is None else f"{v:.2f}"
            colour = "white" if shares[i][j] > 0.6 else "black"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8, color=colour)
        own = sections[i].get("expert")
        if own in experts:
            ax.add_patch(_outline(experts.index(own), i))
    fig.colorbar(mesh, ax=ax, label="share of the row's best", shrink=0.9)
    return svg_of(fig)


def _outline(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.04, y + 0.04), 0.92, 0.92, fill=False, edgecolor="#dd8452", linewidth=2.5)


def curve_chart(curve: TrainingCurve) -> str:
    """Validation perplexity by epoch, the base's perplexity as a dashed line, the kept validation starred."""
    fig = _figure(4.2, 2.8)
    ax = fig.add_subplot()
    ax.plot(curve.epochs, curve.perplexities, marker="o", color=COLORS["curve"], label="expert (validation)")
    ax.axhline(curve.base_perplexity, color="#888888", linestyle="--", label="base")
    best = _best_index(curve)
    ax.plot(
        [curve.epochs[best]],
        [curve.perplexities[best]],
        marker="*",
        markersize=14,
        color="#dd8452",
        linestyle="none",
        label=f"kept (epoch {curve.epochs[best]:g})",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_xlim(0, max(curve.epochs) * 1.08)
    ax.set_ylim(bottom=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    name = curve.expert if not curve.title or curve.title == curve.expert else f"{curve.expert} ({curve.title})"
    ax.set_title(_plain(name), fontsize=10)
    return svg_of(fig)


def _best_index(curve: TrainingCurve) -> int:
    if curve.best_epoch is None:
        return len(curve.epochs) - 1
    return min(range(len(curve.epochs)), key=lambda i: abs(curve.epochs[i] - curve.best_epoch))  # type: ignore[operator]


# --- the page ----------------------------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape("–" if x is None else str(x))


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK KR", "Apple SD Gothic Neo",
  "Malgun Gothic", "NanumGothic", sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222;
  background: #fff; line-height: 1.5; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.6rem 0; }
th, td { border-bottom: 1px solid #eee; padding: 0.25rem 0.6rem; text-align: right; vertical-align: top; }
th { background: #f6f6f6; } td.text, th.text { text-align: left; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
.curves { display: flex; flex-wrap: wrap; gap: 1rem; }
.curves figure { margin: 0; } figcaption { font-size: 0.85rem; color: #555; }
.notes li { color: #7a4b00; }
.para { margin: 0.8rem 0 0.2rem; } .sources { margin: 0 0 1rem 1.2rem; font-size: 0.85rem; color: #444; }
.own { background: #e3efe0; color: #245a1d; border-radius: 3px; padding: 0 0.3rem; font-size: 0.8rem; }
.other { background: #f3e3e0; color: #7a2b1d; border-radius: 3px; padding: 0 0.3rem; font-size: 0.8rem; }
"""


def _head(title: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
    )


def _summary(report: Mapping[str, Any]) -> str:
    o = report["overall"]
    ranked = o.get("sections_with_expert")
    own = f"{o.get('own_expert_first')}/{ranked}" if ranked else "–"
    rows = [
        ("sections", _e(o["sections"])),
        ("characters", _e(o["chars"])),
        ("sentences", _e(o["sentences"])),
        ("distinct-2", _num(o.get("distinct_2"))),
        ("rep-4", _pct(o.get("rep_4"))),
        ("copy rate", _pct(o.get("copy_rate"))),
        ("own expert first", own),
        ("perplexity under the base", _num(o.get("perplexity"), 1)),
        ("perplexity under the experts", _num(o.get("expert_perplexity"), 1)),
    ]
    if o.get("own_dataset_share") is not None:
        rows.append(("paragraphs sourced from their expert's dataset", _pct(o["own_dataset_share"])))
    cells = "".join(f'<tr><th class="text">{name}</th><td>{value}</td></tr>' for name, value in rows)
    return f"<h2>Overall</h2>\n<table>{cells}</table>\n"


def _section_table(sections: Sequence[Mapping[str, Any]], targets: Sequence[int | None]) -> str:
    head = "".join(
        f'<th class="{"text" if c in ("section", "expert", "best expert") else ""}">{c}</th>'
        for c in (
            "#",
            "section",
            "expert",
            "chars",
            "target",
            "distinct-2",
            "rep-4",
            "copy",
            "best expert",
            "own rank",
            "ppl base",
            "ppl expert",
        )
    )
    rows = []
    for s, target in zip(sections, targets, strict=True):
        cells = [
            _e(s["number"]),
            f'<td class="text">{_e(s["heading"])}</td>',
            f'<td class="text">{_e(s.get("expert"))}</td>',
            _e(s["chars"]),
            _e(target),
            _num(s.get("distinct_2")),
            _pct(s.get("rep_4")),
            _pct(s.get("copy_rate")),
            f'<td class="text">{_e(s.get("best_expert"))}</td>',
            _e(s.get("own_expert_rank")),
            _num(s.get("perplexity"), 1),
            _num(s.get("expert_perplexity"), 1),
        ]
        rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>\n"


def _figure_html(svg: str, caption: str) -> str:
    return f"<figure>\n{svg}\n<figcaption>{_e(caption)}</figcaption>\n</figure>\n"


def _source_item(src: Mapping[str, Any]) -> str:
    title = src.get("title") or src.get("doc_id")
    where = f"{_e(src.get('doc_id'))} · passage {_e(src.get('passage_id'))}"
    score = src.get("score")
    score_text = f"BM25 {score:.2f}" if isinstance(score, int | float) else "BM25 –"
    run = src.get("shared_run")
    run_text = f"; {_e(run)} terms shared in a row" if run not in (None, "", 0) else ""
    own = src.get("in_expert_dataset")
    badge = ""
    if own is True:
        badge = ' <span class="own">expert dataset</span>'
    elif own is False:
        badge = ' <span class="other">outside the expert dataset</span>'
    return f"<li><b>{_e(title)}</b> ({where}) — {score_text}{run_text}{badge}</li>"


def _hover(sources: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{s.get('title') or s.get('doc_id')} ({s.get('passage_id')})" for s in sources)


def _provenance(sections: Sequence[Mapping[str, Any]]) -> str:
    """Each paragraph with its sources below it (and their titles on hover), for the sections that have them."""
    parts = []
    for s in sections:
        prov = s.get("provenance")
        if not isinstance(prov, Mapping):
            continue
        share = prov.get("own_dataset_share")
        parts.append(f"<h3>{_e(s['number'])}. {_e(s['heading'])}</h3>")
        share_text = _pct(share) if share is not None else "– (the section has no expert dataset)"
        parts.append(f'<p class="meta">paragraphs whose top source is in its expert\'s dataset: {share_text}</p>')
        for p in prov.get("paragraphs") or []:
            sources = p.get("sources") or []
            parts.append(f'<p class="para" title="{_e(_hover(sources))}">{_e(p.get("text", ""))}</p>')
            items = "".join(_source_item(src) for src in sources) or "<li>no source found</li>"
            parts.append(f'<ol class="sources">{items}</ol>')
    if not parts:
        return ""
    return "<h2>Where each paragraph came from</h2>\n" + "\n".join(parts) + "\n"


def _curve_caption(c: TrainingCurve) -> str:
    best = c.perplexities[_best_index(c)]
    verdict = {True: "below", False: "not below", None: "against"}[c.improved]
    return f"{c.expert}: kept validation perplexity {best:.1f}, {verdict} the base's {c.base_perplexity:.1f}"


def render_html(report: Mapping[str, Any], context: HtmlContext | None = None) -> str:
    """The page for a report in its dict form (`Report.to_dict()`, provenance included when present)."""
    context = context or HtmlContext()
    sections = list(report["sections"])
    targets = list(context.targets) if context.targets else [None] * len(sections)
    title = report.get("title") or report.get("document") or "evaluation"
    out = [_head(f"{title} — evaluation"), "<body>\n", f"<h1>{_e(title)}</h1>\n"]
    meta = f"document: {_e(report.get('document'))}"
    if report.get("outline"):
        meta += f" · outline: {_e(report['outline'])}"
    out.append(f'<p class="meta">{meta}</p>\n')
    notes = report.get("notes") or []
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>\n")
    out.append(_summary(report))
    out.append("<h2>Sections</h2>\n" + _section_table(sections, targets))
    out.append(_figure_html(length_chart(sections, targets), "characters written, and the outline's target"))
    out.append(
        _figure_html(
            ratio_chart(sections),
            "distinct-2: distinct word pairs per term (higher: more varied); rep-4: share of repeated 4-grams; "
            "copy rate: share of 8-term n-grams found in corpus passages",
        )
    )
    ppl = perplexity_chart(sections)
    if ppl is None:
        out.append('<p class="meta">perplexity was not measured.</p>\n')
    else:
        out.append(_figure_html(ppl, "perplexity under the base model and the section's expert"))
    out.append("<h2>Which expert each section reads like</h2>\n")
    heat = relevance_heatmap(sections)
    if heat is None:
        out.append('<p class="meta">no trained experts: relevance was not measured.</p>\n')
    else:
        out.append(
            _figure_html(heat, "BM25 score of each section against each expert's dataset; outlined: its own expert")
        )
    out.append("<h2>Training curves</h2>\n")
    if context.curves:
        out.append('<div class="curves">\n')
        for c in context.curves:
            out.append(_figure_html(curve_chart(c), _curve_caption(c)))
        out.append("</div>\n")
    else:
        out.append('<p class="meta">no trained experts.</p>\n')
    out.append(_provenance(sections))
    out.append("</body>\n</html>\n")
    return "".join(out)


def write_html(path: str | Path, page: str) -> None:
    from ..core.artifacts import write_text_atomic

    write_text_atomic(path, page)
