# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""report.html and the report folder's index.html: one self-contained file each (inline CSS and SVG,
no script, a Content-Security-Policy that forbids any network access when the file is viewed)."""

from __future__ import annotations

import typing as t
from html import escape

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import (
    RunView, Threshold, Watch, fmt_figure, fmt_seconds, history_text, is_could_not_measure, number, parse_time,
    thresholds, trace_line, waiver_text,
)

# nothing is fetched when the report is opened: no script, no remote style, font or image
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
:root{--go:#1a7f37;--nogo:#cf222e;--warn:#9a6700;--grey:#6e7781;--bg:#f6f8fa;--line:#d0d7de}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328}
main{max-width:1100px;margin:0 auto;padding:0 16px 32px}h2{margin:28px 0 8px;font-size:18px}h3{margin:0;font-size:15px}
.banner{color:#fff;padding:18px 24px}.banner h1{margin:0;font-size:26px}.banner p{margin:4px 0 0}
.b-go{background:var(--go)}.b-nogo{background:var(--nogo)}.b-other{background:var(--warn)}
.banner ul{margin:8px 0 0;padding-left:20px}.banner a{color:#fff}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:16px 0}dt{color:var(--grey)}dd{margin:0}
.tag{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;font-weight:600;color:#fff}
.t-go{background:var(--go)}.t-nogo{background:var(--nogo)}.t-other{background:var(--grey)}.t-warn{background:var(--warn)}
.card{border:1px solid var(--line);border-left:6px solid var(--go);border-radius:6px;padding:10px 14px;margin:10px 0}
.card.nogo{border-left-color:var(--nogo)}.card.soft{border-left-color:var(--warn)}
.card p{margin:6px 0}.muted{color:var(--grey);font-size:12px}
table{border-collapse:collapse;margin:6px 0}td,th{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;font-size:13px}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}svg .ax{stroke:var(--line)}svg .lim{stroke:var(--nogo);stroke-dasharray:4 3}
.go{fill:var(--go)}.nogo{fill:var(--nogo)}.err{fill:var(--grey)}.nd{fill:#fff;stroke:var(--grey)}.ph{fill:#8c959f}.rb{fill:#8250df}
.ln{fill:none;stroke:#57606a;stroke-width:1}.charts{display:flex;flex-wrap:wrap;gap:12px}
footer{margin-top:32px;color:var(--grey)}
"""
_DECISION_CLASS = {R.GO: "go", R.NO_GO: "nogo", R.WAIVED: "waived", "SUCCESS": "go", "FAILED": "nogo"}
_OUTCOME_CLASS = {"passed": "go", "failed": "nogo", "error": "err", "no_data": "nd",
                  R.GO: "go", R.NO_GO: "nogo", "NO-DATA": "nd"}


def e(value: t.Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _tag(decision: t.Any) -> str:
    kind = {"go": "t-go", "nogo": "t-nogo", "waived": "t-warn"}.get(_DECISION_CLASS.get(str(decision), ""), "t-other")
    return f'<span class="tag {kind}">{e(decision)}</span>'


def _page(title: str, body_class: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)}</title>'
            f"<style>{_CSS}</style></head><body class=\"{body_class}\">\n{body}\n</body></html>\n")


# --- report.html ------------------------------------------------------------------------------------


def render_report(view: RunView) -> str:
    decision = view.decision
    parts = [_banner(view), "<main>", _meta(view), _timeline_section(view), _rollback_section(view),
             _gates_section(view), _failures_section(view)]
    if view.watch is not None:
        parts.append(_watch_section(view.watch))
    parts.append(_notices_section(view))
    parts.append(_footer(view))
    parts.append("</main>")
    return _page(f"{decision} · {view.release} · run {view.run_id}", f"d-{_DECISION_CLASS.get(decision, 'other')}",
                 "\n".join(p for p in parts if p))


def _banner(view: RunView) -> str:
    decision = view.decision
    kind = {"go": "b-go", "nogo": "b-nogo"}.get(_DECISION_CLASS.get(decision, ""), "b-other")
    lines = [f'<header class="banner {kind}" id="decision" data-decision="{e(decision)}">',
             f'<h1><span class="decision">{e(decision)}</span> · {e(view.release)}</h1>',
             f"<p>run {e(view.run_id)} · {e(fmt_seconds(view.duration_s))}"
             + (" · check mode" if view.run.get("check_mode") else "")
             + (f" · interrupted ({e(view.end.get('interrupted'))})" if view.end and view.end.get("interrupted") else "")
             + "</p>"]
    failing = [(i, g) for i, g in enumerate(view.gates) if R.is_enforced_nogo(g)]
    if failing or view.failures:
        lines.append("<ul>")
        lines += [f'<li><a href="#gate-{i}">gate {e(g.get("name"))}</a> ({e(g.get("component"))}): '
                  f'{e(g.get("reason"))}</li>' for i, g in failing]
        lines += [f"<li>step {e(f.get('task'))} on {e(f.get('host'))} ({e(f.get('component') or 'outside any phase')}): "
                  f"{e(f.get('msg'))}</li>" for f in view.failures]
        lines.append("</ul>")
    rollback = view.rollback or {}
    if rollback.get("state") not in (None, R.ROLLBACK_NOT_STARTED) or rollback.get("why_not"):
        lines.append(f"<p>{e(_rollback_sentence(rollback))}</p>")
    if view.watch is not None:
        kind = {"go": "t-go", "nogo": "t-nogo"}.get(_DECISION_CLASS.get(view.watch.verdict, ""), "t-other")
        lines.append(f'<p>watch: <span class="tag {kind}" id="watch-verdict">{e(view.watch.verdict)}</span> '
                     f"{len(view.watch.passes)} passes, {len(view.watch.alerts)} alerts</p>")
    lines.append("</header>")
    return "\n".join(lines)


def _rollback_sentence(rollback: t.Mapping[str, t.Any]) -> str:
    components = ", ".join(rollback.get("components") or []) or "nothing"
    state = rollback.get("state")
    if state == R.ROLLBACK_FINISHED:
        outcome = "ok" if rollback.get("ok") else "FAILED"
        budget = "within budget" if rollback.get("within_budget") else "OVER BUDGET"
        return (f"rollback of {components}: {outcome} in {fmt_seconds(rollback.get('duration_s'))}, {budget} "
                f"({fmt_seconds(rollback.get('budget_s'))})")
    if state in (R.ROLLBACK_RUNNING, R.ROLLBACK_CUT_SHORT):
        return f"rollback of {components}: cut short, it never finished"
    if rollback.get("mode") == "plan" and rollback.get("components"):
        return f"rollback of {components} planned, not run"
    return f"no rollback: {rollback.get('why_not') or 'none was due'}"


def _meta(view: RunView) -> str:
    run = view.run
    rows = [("release", view.release), ("started", view.started), ("ended", view.ended or "not recorded (no run_end)"),
            ("duration", fmt_seconds(view.duration_s)), ("user", run.get("user") or "not recorded"),
            ("controller", run.get("controller") or "not recorded"), ("playbook", run.get("playbook")),
            ("limit", run.get("limit") or "none"), ("check mode", "yes" if run.get("check_mode") else "no"),
            ("run id", view.run_id)]
    if run.get("rollback_run"):
        rows.append(("rollback run", "yes: this run is itself a rollback"))
    cells = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return f'<dl class="meta" id="meta">{cells}</dl>'


# --- timeline ---------------------------------------------------------------------------------------

_TL_LABEL = 190
_TL_WIDTH = 1000
_TL_ROW = 18
_MAX_LANES = 6


def _lanes(spans: list[tuple[float, float, t.Any]]) -> list[list[tuple[float, float, t.Any]]]:
    """Spans packed into as few rows as do not overlap (the last row takes the overflow)."""
    lanes: list[list[tuple[float, float, t.Any]]] = []
    for span in sorted(spans, key=lambda s: s[0]):
        for lane in lanes:
            if lane[-1][1] <= span[0]:
                lane.append(span)
                break
        else:
            if len(lanes) < _MAX_LANES:
                lanes.append([span])
            else:
                lanes[-1].append(span)
    return lanes


def _span(start: t.Any, end: t.Any, fallback_end: float) -> tuple[float, float] | None:
    first = parse_time(start)
    if first is None:
        return None
    last = parse_time(end)
    return first, max(first, last if last is not None else fallback_end)


def _timeline_section(view: RunView) -> str:
    origin = parse_time(view.started)
    if origin is None:
        return ""
    finish = parse_time(view.ended) or max([parse_time(g.get("ended")) or origin for g in view.gates] + [origin])
    total = max(finish - origin, 0.001)
    scale = (_TL_WIDTH - _TL_LABEL - 10) / total
    rows: list[str] = []

    def x(at: float) -> float:
        return round(_TL_LABEL + (at - origin) * scale, 1)

    def draw(y: int, span: tuple[float, float], css: str, title: str, height: int = 12) -> str:
        width = max(round((span[1] - span[0]) * scale, 1), 2)
        return (f'<rect class="{css}" x="{x(span[0])}" y="{y + (14 - height) // 2}" width="{width}" height="{height}">'
                f"<title>{e(title)}</title></rect>")

    y = 20
    phase_gates = _gates_by_phase(view)
    for index, phase in enumerate(view.phases):
        span = _span(phase.get("started"), phase.get("ended"), finish)
        label = f"{phase.get('phase') or '-'} · {phase.get('component') or '-'}"
        rows.append(f'<text x="4" y="{y + 11}">{e(label[:30])}</text>')
        if span:
            rows.append(draw(y, span, "ph", f"{label}: {phase.get('decision')} in {fmt_seconds(phase.get('duration_s'))}"))
        y += _TL_ROW
        y = _gate_rows(rows, y, phase_gates.get(index, []), finish, draw)
    loose = phase_gates.get(-1, [])
    if loose:
        rows.append(f'<text x="4" y="{y + 11}">outside any phase</text>')
        y = _gate_rows(rows, y, loose, finish, draw)
    rollback = view.rollback or {}
    rb_span = _span(rollback.get("started"), rollback.get("ended"), finish) if rollback.get("started") else None
    if rb_span:
        rows.append(f'<text x="4" y="{y + 11}">rollback</text>')
        rows.append(draw(y, rb_span, "rb", _rollback_sentence(rollback)))
        budget = rollback.get("budget_s")
        if budget is not None and rb_span[0] + float(budget) <= finish:
            bx = x(rb_span[0] + float(budget))
            rows.append(f'<line class="lim" x1="{bx}" x2="{bx}" y1="{y - 2}" y2="{y + 16}"><title>rollback budget '
                        f'{e(fmt_seconds(budget))}</title></line>')
        y += _TL_ROW
        for play in view.rollback_plays:
            span = _span(play.get("started"), play.get("ended"), finish)
            if span and play.get("hosts", True):
                rows.append(f'<text x="14" y="{y + 11}">{e(str(play.get("component") or play.get("play"))[:28])}</text>')
                rows.append(draw(y, span, "nogo" if play.get("failures") else "rb",
                                 f"{play.get('play')}: {fmt_seconds(play.get('duration_s'))}", 8))
                y += _TL_ROW
    ticks = []
    for i in range(5):
        at = origin + total * i / 4
        ticks.append(f'<line class="ax" x1="{x(at)}" x2="{x(at)}" y1="14" y2="{y}"></line>'
                     f'<text x="{x(at) - (30 if i == 4 else 0)}" y="10">+{e(fmt_seconds(at - origin))}</text>')
    height = y + 4
    return (f'<section id="timeline"><h2>Timeline</h2><p class="muted">wall time from {e(view.started)} (UTC); '
            f"phases grey, gates green/red, rollback purple, the dashed line is the rollback budget</p>"
            f'<svg viewBox="0 0 {_TL_WIDTH} {height}" width="100%" role="img" aria-label="timeline">'
            + "".join(ticks) + "".join(rows) + "</svg></section>")


def _gate_rows(rows: list[str], y: int, gates: list[tuple[int, dict[str, t.Any]]], finish: float,
               draw: t.Callable[..., str]) -> int:
    spans = []
    for index, gate in gates:
        span = _span(gate.get("started"), gate.get("ended"), finish)
        if span:
            spans.append((span[0], span[1], (index, gate)))
    for lane in _lanes(spans):
        for start, end, (index, gate) in lane:
            css = _DECISION_CLASS.get(str(gate.get("decision")), "err")
            if gate.get("decision") == R.NO_GO and not R.is_enforced_nogo(gate):
                css = "err"
            rows.append(draw(y, (start, end), css, f"gate {gate.get('name')}: {gate.get('decision')} ({gate.get('mode')})", 8))
        y += _TL_ROW - 6
    return y + (6 if spans else 0)


def _gates_by_phase(view: RunView) -> dict[int, list[tuple[int, dict[str, t.Any]]]]:
    """Gates by the phase that recorded them, -1 for none."""
    found: dict[int, list[tuple[int, dict[str, t.Any]]]] = {}
    for index, gate in enumerate(view.gates):
        found.setdefault(view.gate_phase[index], []).append((index, gate))
    return found


# --- rollback -------------------------------------------------------------------------------------


def _rollback_section(view: RunView) -> str:
    rollback = view.rollback
    if not rollback:
        return ""
    head = f'<section id="rollback"><h2>Rollback</h2><p>{e(_rollback_sentence(rollback))}</p>'
    body = []
    per = rollback.get("per_component") or {}
    if per:
        body.append("<table><tr><th>component</th><th>ran</th><th>ok</th><th>duration</th><th>budget</th><th></th></tr>")
        for component, item in per.items():
            body.append(f"<tr><td>{e(component)}</td><td>{'yes' if item.get('ran') else 'no'}</td>"
                        f"<td>{'yes' if item.get('ok') else 'NO'}</td><td>{e(fmt_seconds(item.get('duration_s')))}</td>"
                        f"<td>{e(fmt_seconds(item.get('budget_s')))}</td><td>{_budget_bar(item)}</td></tr>")
        body.append("</table>")
    if rollback.get("duration_s") is not None and rollback.get("budget_s"):
        body.append(f"<p>total {_budget_bar(rollback)} {e(fmt_seconds(rollback.get('duration_s')))} of "
                    f"{e(fmt_seconds(rollback.get('budget_s')))}</p>")
    body += [f"<p><b>ROLLBACK PROBLEM</b>: {e(p)}</p>" for p in rollback.get("problems") or []]
    if rollback.get("reason"):
        body.append(f'<p class="muted">reason: {e(rollback.get("reason"))}</p>')
    if rollback.get("command"):
        body.append(f"<p class=\"muted\">command: <code>{e(rollback.get('command'))}</code></p>")
    body += [f"<p>rollback gate {e(g.get('name'))}: {_tag(g.get('decision'))} {e(g.get('reason'))}</p>"
             for g in view.rollback_gates]
    return head + "".join(body) + "</section>"


def _budget_bar(item: t.Mapping[str, t.Any]) -> str:
    """Duration against budget as a bar: green within, red over."""
    duration, budget = number(item.get("duration_s")), number(item.get("budget_s"))
    if duration is None or not budget:
        return ""
    share = min(duration / budget, 1.5)
    css = "go" if duration <= budget else "nogo"
    return (f'<svg width="160" height="12" role="img" aria-label="duration against budget">'
            f'<rect class="ax" x="0" y="2" width="106" height="8" fill="none"></rect>'
            f'<rect class="{css}" x="0" y="3" width="{round(share * 106, 1)}" height="6"></rect>'
            f'<line class="lim" x1="106" x2="106" y1="0" y2="12"></line></svg>')


# --- gates ----------------------------------------------------------------------------------------


def _gates_section(view: RunView) -> str:
    if not view.gates:
        return '<section id="gates"><h2>Gates</h2><p>No gate ran in this run: nothing was judged.</p></section>'
    cards = [_gate_card(i, g) for i, g in enumerate(view.gates)]
    return f'<section id="gates"><h2>Gates ({len(view.gates)})</h2>' + "".join(cards) + "</section>"


def _gate_card(index: int, gate: t.Mapping[str, t.Any], prefix: str = "gate") -> str:
    decision = gate.get("decision")
    css = "nogo" if R.is_enforced_nogo(gate) else ("soft" if decision in (R.NO_GO, R.WAIVED) else "")
    mode = gate.get("mode") or "-"
    note = ""
    if decision == R.NO_GO and not R.is_enforced_nogo(gate):
        note = " (ignored: ignore_errors)" if gate.get("ignored") else f" ({mode}: recorded, not enforced)"
    elif decision == R.WAIVED:
        note = f" ({waiver_text(gate)})"
    counts = gate.get("counts") or {}
    head = (f'<article class="card {css}" id="{prefix}-{index}" data-gate="{e(gate.get("name"))}">'
            f'<h3><span class="gate-name">{e(gate.get("name"))}</span> {_tag(decision)}{e(note)}</h3>'
            f'<p class="muted">{e(gate.get("phase") or "-")} · {e(gate.get("component") or "-")} · '
            f"host {e(gate.get('host') or '-')}"
            + (f" via {e(gate.get('delegated_to'))}" if gate.get("delegated_to") else "")
            + f" · {e(mode)} · {e(gate.get('source') or '')} {e(gate.get('probe_module') or '')} · "
            f"{counts.get('taken', 0)}/{counts.get('planned', 0)} samples, {counts.get('passed', 0)} passed, "
            f"{counts.get('failed', 0)} failed, {counts.get('errors', 0)} errors, {counts.get('no_data', 0)} no data · "
            f"{e(fmt_seconds(gate.get('duration_s')))}"
            + (f" · checklist {e(gate.get('checklist_ref'))}" if gate.get("checklist_ref") else "") + "</p>")
    if gate.get("redacted"):
        return head + "<p>redacted (no_log): no figures, values or reasons were recorded.</p></article>"
    if is_could_not_measure(gate):
        head += "<p><b>could not measure</b></p>"
    criteria = gate.get("criteria") or []
    rows = "".join(f"<tr><td><code>{e(c.get('criterion'))}</code></td><td>{e(c.get('outcome'))}</td>"
                   f"<td>{c.get('held', 0)} held, {c.get('failed', 0)} failed, {c.get('errors', 0)} errors</td></tr>"
                   for c in criteria)
    table = f"<table>{rows}</table>" if rows else ""
    history = history_text(gate)
    past = f'<p class="history">{e(history)}</p>' if history else ""
    return (head + f"<p>{e(gate.get('reason'))}</p>" + past + table + _gate_charts(gate) + "</article>")


def _gate_charts(gate: t.Mapping[str, t.Any]) -> str:
    samples = [s for s in gate.get("samples") or [] if isinstance(s, t.Mapping)]
    if not samples:
        return ""
    seen: set[tuple[str, str, float]] = set()
    charts = []
    for criterion in gate.get("criteria") or []:
        for limit in thresholds(criterion.get("criterion")):
            key = (limit.path, limit.op, limit.value)
            if key not in seen:
                seen.add(key)
                charts.append(_chart(limit, samples))
    if not charts:
        charts.append(_strip(samples))
    return '<div class="charts">' + "".join(charts) + "</div>"


_CW, _CH, _CL = 330, 96, 44  # chart width, height, left margin (axis labels)


def _chart(limit: Threshold, samples: list[t.Mapping[str, t.Any]]) -> str:
    """Each sample's figure (x: sample, y: value) against the threshold line."""
    values = [number((s.get("figures") or {}).get(limit.path)) for s in samples]
    known = [v for v in values if v is not None] + [limit.value]
    low, high = min(known), max(known)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    low, high = low - pad, high + pad
    count = len(samples)
    step = (_CW - _CL - 8) / max(count - 1, 1)

    def y(value: float) -> float:
        return round(8 + (high - value) / (high - low) * (_CH - 24), 1)

    points, marks = [], []
    for i, (sample, value) in enumerate(zip(samples, values)):
        px = round(_CL + i * step, 1)
        css = _OUTCOME_CLASS.get(str(sample.get("outcome")), "err")
        label = f"#{sample.get('index', i + 1)} {fmt_figure(value) if value is not None else 'no figure'} {sample.get('outcome')}"
        if value is None:
            marks.append(f'<rect class="{css}" x="{px - 3}" y="{_CH - 14}" width="6" height="6"><title>{e(label)}</title></rect>')
            continue
        points.append(f"{px},{y(value)}")
        marks.append(f'<circle class="{css}" cx="{px}" cy="{y(value)}" r="3"><title>{e(label)}</title></circle>')
    ly = y(limit.value)
    title = f"{limit.path} {limit.op} {fmt_figure(limit.value)}"
    return (f'<svg class="chart" width="{_CW}" height="{_CH}" viewBox="0 0 {_CW} {_CH}" role="img" aria-label="{e(title)}">'
            f'<text x="{_CL}" y="{_CH - 4}">{e(title[:52])}</text>'
            f'<text x="2" y="{y(high - pad) + 4}">{e(fmt_figure(round(high - pad, 4)))}</text>'
            f'<text x="2" y="{y(low + pad) + 4}">{e(fmt_figure(round(low + pad, 4)))}</text>'
            f'<line class="ax" x1="{_CL - 4}" x2="{_CL - 4}" y1="4" y2="{_CH - 16}"></line>'
            f'<line class="lim" x1="{_CL - 4}" x2="{_CW}" y1="{ly}" y2="{ly}"><title>threshold {e(title)}</title></line>'
            + (f'<polyline class="ln" points="{" ".join(points)}"></polyline>' if len(points) > 1 else "")
            + "".join(marks) + "</svg>")


def _strip(samples: list[t.Mapping[str, t.Any]]) -> str:
    """One square per sample, coloured by its outcome (for criteria without a numeric threshold)."""
    cells = []
    for i, sample in enumerate(samples):
        css = _OUTCOME_CLASS.get(str(sample.get("outcome")), "err")
        figures = ", ".join(f"{k}={fmt_figure(v)}" for k, v in list((sample.get("figures") or {}).items())[:3])
        label = f"#{sample.get('index', i + 1)} {sample.get('outcome')} {figures or sample.get('error') or ''}"
        cells.append(f'<rect class="{css}" x="{i * 11 + 1}" y="1" width="9" height="12"><title>{e(label)}</title></rect>')
    width = len(samples) * 11 + 2
    return (f'<svg class="strip" width="{width}" height="14" viewBox="0 0 {width} 14" role="img" '
            f'aria-label="sample outcomes">' + "".join(cells) + "</svg>")


def _failures_section(view: RunView) -> str:
    if not view.failures:
        return ""
    rows = "".join(f"<tr><td>{e(f.get('phase'))}</td><td>{e(f.get('component'))}</td><td>{e(f.get('host'))}</td>"
                   f"<td>{e(f.get('task'))}</td><td>{e(f.get('reason'))}: {e(f.get('msg'))}</td></tr>" for f in view.failures)
    return (f'<section id="failures"><h2>Failed steps ({len(view.failures)})</h2><table><tr><th>phase</th>'
            f"<th>component</th><th>host</th><th>task</th><th>what</th></tr>{rows}</table></section>")


def _notices_section(view: RunView) -> str:
    """Who was told: every notice (sent or not) and the trace export."""
    if not view.notices and not view.trace_exports:
        return ""
    rows = "".join(f'<tr class="{"sent" if n.get("sent") else "unsent"}"><td>{e(n.get("ts"))}</td>'
                   f"<td>{e(n.get('target'))}</td><td>{e(n.get('event'))}</td>"
                   f'<td><span class="tag {"t-go" if n.get("sent") else "t-nogo"}">{e(n.get("outcome"))}</span></td>'
                   f"<td>{e(n.get('status') or '-')}</td><td>{e(n.get('attempts'))}</td><td>{e(n.get('error') or '')}</td></tr>"
                   for n in view.notices)
    table = (f"<table><tr><th>time</th><th>to</th><th>event</th><th>outcome</th><th>HTTP</th><th>attempts</th>"
             f"<th>error</th></tr>{rows}</table>") if view.notices else "<p>No notice was sent.</p>"
    traces = "".join(f'<p class="trace">{e(x.get("ts"))} · {e(trace_line(x))}</p>' for x in view.trace_exports)
    return f'<section id="notices"><h2>Notices ({len(view.notices)})</h2>{table}{traces}</section>'


# --- watch ----------------------------------------------------------------------------------------


def _watch_section(watch: Watch) -> str:
    window = fmt_seconds(watch.window_s) if watch.window_s is not None else "not recorded"
    parts = [f'<section id="watch"><h2>Watch {_tag(watch.verdict)}</h2>',
             f"<p>window {e(window)} from {e(watch.started)}" + (f" to {e(watch.ends)}" if watch.ends else "")
             + f" · {len(watch.passes)} passes · {len(watch.invocations)} invocations · {len(watch.alerts)} alerts</p>"]
    if watch.checks:
        parts.append("<table><tr><th>check</th><th>component</th><th>layer</th><th>GO</th><th>NO-GO</th>"
                     "<th>no data</th><th>last</th><th>history</th></tr>")
        for check in watch.checks.values():
            counts, history = check["counts"], check["history"]
            last = history[-1] if history else {}
            parts.append(f'<tr data-check="{e(check["check"])}"><td class="check-name">{e(check["check"])}</td>'
                         f"<td>{e(check.get('component'))}</td><td>{e(check.get('layer'))}</td>"
                         f"<td>{counts.get(R.GO, 0)}</td><td>{counts.get(R.NO_GO, 0)}</td><td>{counts.get('NO-DATA', 0)}</td>"
                         f"<td>{_tag(last.get('decision'))} {e(fmt_figure(last.get('value')))}</td>"
                         f"<td>{_history(history)}</td></tr>")
        parts.append("</table>")
    for index, gate in enumerate(watch.gates):
        parts.append(_gate_card(index, gate, prefix="watch-gate"))
    if watch.rollback:
        parts.append(f"<p>watch rollback: {e(_rollback_sentence(watch.rollback))}</p>")
    inv = "".join(f"<tr><td>{e(i.get('started'))}</td><td>{e(i.get('ended') or 'running or killed')}</td>"
                  f"<td>{e(i.get('mode'))}</td><td>{e(i.get('verdict'))}</td><td>{e(i.get('interrupted') or '')}</td></tr>"
                  for i in watch.invocations)
    parts.append(f"<table><tr><th>invocation started</th><th>ended</th><th>mode</th><th>verdict</th><th>interrupted</th>"
                 f"</tr>{inv}</table></section>")
    return "".join(parts)


def _history(history: list[dict[str, t.Any]]) -> str:
    """The last 48 passes of a check, one square each."""
    shown = history[-48:]
    cells = "".join(f'<rect class="{_OUTCOME_CLASS.get(h["decision"], "err")}" x="{i * 5}" y="1" width="4" height="10">'
                    f"<title>{e(h.get('at'))} {e(h['decision'])} {e(fmt_figure(h.get('value')))}</title></rect>"
                    for i, h in enumerate(shown))
    width = max(len(shown) * 5, 5)
    return f'<svg width="{width}" height="12" role="img" aria-label="pass history">{cells}</svg>'


def _footer(view: RunView) -> str:
    links = ['<a href="journal.jsonl">journal.jsonl</a>', '<a href="summary.json">summary.json</a>',
             '<a href="junit.xml">junit.xml</a>']
    if (view.decision == R.NO_GO) or (view.watch is not None and view.watch.alerts):
        links.append('<a href="incident.md">incident.md</a>')
    return (f"<footer>Rendered from this run's journal by emp.deploy (re-render with <code>ansible-playbook "
            f"emp.deploy.report -e emp_run_dir=DIR</code>). Records: {' · '.join(links)} · "
            f'<a href="../index.html">all runs</a></footer>')


# --- index.html -----------------------------------------------------------------------------------


def render_index(rows: list[dict[str, t.Any]]) -> str:
    """Every run of the report folder, newest first: decision, release, duration, watch."""
    lines = ['<main><h1>Deployment runs</h1><table id="runs"><tr><th>started</th><th>decision</th><th>release</th>'
             "<th>duration</th><th>watch</th><th>run</th></tr>"]
    for row in rows:
        run_id = e(row["run_id"])
        target = f"{run_id}/report.html" if row.get("report") else f"{run_id}/journal.jsonl"
        lines.append(f'<tr data-run="{run_id}"><td>{e(row.get("started"))}</td><td>{_tag(row.get("decision"))}</td>'
                     f"<td>{e(row.get('release') or '-')}</td><td>{e(fmt_seconds(row.get('duration_s')))}</td>"
                     f"<td>{_tag(row['watch']) if row.get('watch') else ''}</td>"
                     f'<td><a href="{target}">{run_id}</a></td></tr>')
    lines.append(f"</table><p class=\"muted\">{len(rows)} runs</p></main>")
    return _page("emp.deploy runs", "index", "\n".join(lines))
