"""Daily GPU-hours and CPU-hours as server-rendered SVG bar charts (no JavaScript). Pure.

One chart per (series, resource): 30 bars, one per UTC day, oldest left; each bar carries its
day and exact value (``data-day``, ``data-hours``) and a ``<title>`` tooltip; the chart's
``data-total`` and caption give the window's total. Every text is escaped.
"""

from __future__ import annotations

from html import escape

from ..quota.timebudget import NOUN

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 620, 150, 46, 22, 24


MIN_TOP = 0.1   # hours: the y axis of a chart of a few minutes' use still reads 0 to 0.1


def _num(x: float) -> str:
    """A number for the data attributes (what tests and scripts read)."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if x else "0"


def _shown(x: float) -> str:
    """A number as the chart shows it: never "0" beside a visible bar."""
    return "<0.01" if 0 < x < 0.005 else _num(x)


def chart(name: str, resource: str, days: list, values: list) -> str:
    """One bar chart: ``name`` (a user or team), ``resource`` (``gpu_hours``/``cpu_hours``)."""
    top = max([MIN_TOP, *values])
    total = sum(values)
    inner_w, inner_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = inner_w / max(1, len(values))
    label = f"{name}: {_shown(total)} {NOUN[resource]} in {len(values)} days"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ptjaas-usage-chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" data-name="{escape(name)}" '
        f'data-resource="{resource}" data-total="{_num(total)}">',
        f'<text x="{PAD_LEFT}" y="15" font-size="13" font-family="sans-serif">{escape(label)}</text>',
        f'<line x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH - 8}" y2="{HEIGHT - PAD_BOTTOM}" stroke="#888"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 9}" font-size="10" text-anchor="end" '
        f'font-family="sans-serif">{_shown(top)}</text>',
        f'<text x="{PAD_LEFT - 4}" y="{HEIGHT - PAD_BOTTOM}" font-size="10" text-anchor="end" '
        f'font-family="sans-serif">0</text>',
    ]
    color = "#c0392b" if resource == "gpu_hours" else "#2e86c1"
    for i, (day, v) in enumerate(zip(days, values)):
        h = inner_h * v / top
        x = PAD_LEFT + i * step + 1
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM - h:.1f}" width="{max(1.0, step - 2):.1f}" '
            f'height="{h:.1f}" fill="{color}" data-day="{day}" data-hours="{_num(v)}">'
            f'<title>{escape(f"{day}: {_shown(v)} {NOUN[resource]}")}</title></rect>'
        )
    for i in (0, len(days) - 1) if days else ():
        anchor = "start" if i == 0 else "end"
        x = PAD_LEFT + (i + (1 if i else 0)) * step
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" font-size="10" text-anchor="{anchor}" '
                   f'font-family="sans-serif">{day_label(days[i])}</text>')
    out.append("</svg>")
    return "".join(out)


def day_label(day: str) -> str:
    return escape(day)


def charts(series: dict, days: list, resources=("gpu_hours", "cpu_hours")) -> list:
    """``[(name, resource, svg)]`` for ``runs.daily(...)``'s series, skipping all-zero ones."""
    out = []
    for name, row in series.items():
        for r in resources:
            if any(row[r]):
                out.append((name, r, chart(name or "(no team)", r, days, row[r])))
    return out
