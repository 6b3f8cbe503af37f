"""Assembles the run report: one HTML page, its charts inline SVG, with no link to fetch.

Pure: a run record (see :mod:`streamlearn.run_record`) in, the page's text out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from html import escape
from typing import Any

from streamlearn.report.charts import metric_title, pipeline_charts
from streamlearn.report.summary import summary
from streamlearn.report.svg import render

_STYLE = """
body { font-family: sans-serif; margin: 24px auto; max-width: 920px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin: 22px 0 6px; } .meta { color: #666; font-size: 13px; }
p.summary { font-size: 15px; line-height: 1.5; background: #f3f6fa; padding: 12px 16px; }
figure { margin: 8px 0; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 10px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } .none { color: #777; }
"""

_EMPTY = {
    "Throughput and consumer lag": "No messages were consumed.",
    "Batch size and triggers": "No batch was closed.",
    "Latency against the target": "No predictions were written, so there is no latency.",
    "Model score, drift and replacements": "No prequential score was reported (no labels "
    "were learned, or the run ended before the first report).",
    "Dead letters": "No message was dead-lettered.",
    "Checkpoints": "No checkpoint was written (checkpointing off, or the run was shorter "
    "than its interval).",
}


def render_report(record: Mapping[str, Any], title: str = "streamlearn run report") -> str:
    """The whole page for a run record.

    Examples
    --------
    >>> from streamlearn.run_record import RunRecorder
    >>> rec = RunRecorder({"fraud": ("classification", 100.0)}, clock=lambda: 0.0)
    >>> rec.on_consumed("fraud", 10)
    >>> page = render_report(rec.record())
    >>> page.startswith("<!DOCTYPE html>") and "fraud (classification) consumed 10" in page
    True
    """
    pipelines: Mapping[str, Any] = record["pipelines"]
    duration = float(record.get("duration_s", 0.0))
    started = dt.datetime.fromtimestamp(record.get("started_at", 0), tz=dt.UTC)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">started {started:%Y-%m-%d %H:%M:%S} UTC, ran {duration:,.0f} s, '
        f"{len(pipelines)} pipeline{'s' if len(pipelines) != 1 else ''}</p>",
    ]
    if not pipelines:
        parts.append('<p class="summary">Nothing was recorded: no pipeline reported.</p>')
    for name, data in pipelines.items():
        parts.append(
            f'<p class="summary" id="summary-{escape(name)}">'
            f"{escape(summary(name, data, duration))}</p>"
        )
    for name, data in pipelines.items():
        parts += _pipeline_section(name, data)
    parts.append("</body></html>")
    return "\n".join(parts)


def _pipeline_section(name: str, data: Mapping[str, Any]) -> list[str]:
    parts = [
        f'<h2 id="pipeline-{escape(name)}">Pipeline {escape(name)} '
        f"({escape(str(data.get('task', '')))})</h2>"
    ]
    points = data["points"]
    if data.get("points_dropped"):
        parts.append(
            f'<p class="meta">The charts show the last {len(points):,} seconds; '
            "the totals and the summary cover the whole run.</p>"
        )
    for section, charts in pipeline_charts(data).items():
        parts.append(f"<h3>{escape(section)}</h3>")
        drawn = [c for c in charts if c is not None]
        parts += [f"<figure>{render(chart)}</figure>" for chart in drawn]
        if not drawn:
            parts.append(f'<p class="none">{escape(_EMPTY[section])}</p>')
    parts.append("<h3>Totals</h3>")
    parts.append(_totals_table(data))
    return parts


def _totals_table(data: Mapping[str, Any]) -> str:
    totals = data["totals"]
    rows: list[tuple[str, str]] = [
        ("messages consumed", f"{totals['consumed']:,}"),
        ("predictions written", f"{totals['predicted']:,}"),
        ("events learned", f"{totals['learned']:,}"),
        ("predictions over the latency target", f"{totals['missed']:,}"),
    ]
    latency = data.get("latency_ms") or {}
    for name in ("p50", "p90", "p99", "max"):
        if name in latency:
            rows.append((f"latency {name} (ms, histogram bin edge)", _ms(latency[name])))
    for trigger, (count, events) in sorted(totals["batches"].items()):
        rows.append(
            (f"batches closed by {trigger}", f"{count:,} ({events / count:,.1f} mean size)")
        )
    for reason, n in sorted(totals["invalid"].items()):
        rows.append((f"dead-lettered: {reason}", f"{n:,}"))
    for reason, n in sorted(totals["unmatched"].items()):
        rows.append((f"labels unmatched: {reason}", f"{n:,}"))
    if totals.get("too_late"):
        rows.append(("events too late for their aggregates", f"{totals['too_late']:,}"))
    for metric, value in sorted((data.get("last_scores") or {}).items()):
        rows.append((f"last {metric_title(metric)}", f"{value:.4f}"))
    rows += [
        ("drift detections", f"{totals['drifts']:,}"),
        ("model replacements", f"{totals['replacements']:,}"),
        ("checkpoints written", f"{totals['checkpoints']:,}"),
    ]
    body = "".join(f'<tr><td>{escape(k)}</td><td class="n">{escape(v)}</td></tr>' for k, v in rows)
    return f"<table>{body}</table>"


def _ms(value: float) -> str:
    """A latency for the table: three significant digits, whole milliseconds from 1 s.

    >>> _ms(33.497), _ms(1_000_000.0), _ms(0.1259)
    ('33.5', '1,000,000', '0.126')
    """
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"
