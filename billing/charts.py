"""A stacked bar chart as plain geometry for an inline SVG in a template (no JavaScript needed). Pure.

The chart has its axes drawn (dates under the bars, the scale beside them) and, when the bars are wide
enough to carry one, each day's total written above its bar; the page also lists every day's figures
in a table, so no value is only on hover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

PALETTE = ("#3b5bdb", "#f08c00", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#e8590c", "#5c940d")
LEFT, BOTTOM, TOP = 72, 28, 16  # room for the scale, the dates and the value labels
VALUE_LABELS_UP_TO = 14  # days; beyond that the labels would overlap (the table has them all)
DATE_TICKS = 7


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    label: str  # for the <title> tooltip and screen readers


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bars: list[Bar]
    legend: list[tuple[str, str]]
    top: str  # the largest day's total, as text
    x_ticks: list[Tick]  # dates under the bars
    y_ticks: list[Tick]  # 0, half and the largest day, beside the bars
    values: list[Tick]  # each day's total above its bar (short ranges only)


def stacked_bars(days: list[date], series: dict[str, list[int]], *, width: int = 760, height: int = 220,
                 fmt=str, short_fmt=None) -> Chart:
    """Bars (one stack per day, one colour per series), axes, legend and value labels."""
    short_fmt = short_fmt or fmt
    plot_width, plot_height = width - LEFT, height - BOTTOM - TOP
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = max(totals, default=0)
    scale = top or 1
    slot = plot_width / max(len(days), 1)
    legend = [(name, PALETTE[n % len(PALETTE)]) for n, name in enumerate(series)]
    bars, values = [], []
    for i, day in enumerate(days):
        y = float(TOP + plot_height)
        for (name, amounts), (_, color) in zip(series.items(), legend):
            if not amounts[i]:
                continue
            h = amounts[i] / scale * plot_height
            y -= h
            bars.append(Bar(x=LEFT + i * slot + slot * 0.15, y=y, width=slot * 0.7, height=h, color=color,
                            label=f"{day.isoformat()} {name}: {fmt(amounts[i])}"))
        if len(days) <= VALUE_LABELS_UP_TO and totals[i]:
            values.append(Tick(x=LEFT + (i + 0.5) * slot, y=y - 4, label=short_fmt(totals[i])))
    step = max(1, -(-len(days) // DATE_TICKS))
    x_ticks = [Tick(x=LEFT + (i + 0.5) * slot, y=height - 8, label=day.strftime("%b %-d"))
               for i, day in enumerate(days) if i % step == 0]
    y_ticks = [Tick(x=LEFT - 6, y=TOP + plot_height * (1 - share), label=short_fmt(round(top * share)))
               for share in (0, 0.5, 1)] if top else [Tick(x=LEFT - 6, y=TOP + plot_height, label=short_fmt(0))]
    return Chart(width=width, height=height, plot_left=LEFT, plot_bottom=TOP + plot_height, bars=bars,
                 legend=legend, top=fmt(top), x_ticks=x_ticks, y_ticks=y_ticks, values=values)
