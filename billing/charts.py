"""A stacked bar chart as plain geometry for an inline SVG in a template (no JavaScript needed). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

PALETTE = ("#3b5bdb", "#f08c00", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#e8590c", "#5c940d")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    label: str  # for the <title> tooltip and screen readers


def stacked_bars(days: list[date], series: dict[str, list[int]], *, width: int = 720, height: int = 180,
                 fmt=str) -> tuple[list[Bar], list[tuple[str, str]], str]:
    """Bars (one stack per day, one colour per series), the legend, and the largest day's total as text."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = max(totals, default=0) or 1
    slot = width / max(len(days), 1)
    bars, legend = [], []
    for n, (name, values) in enumerate(series.items()):
        legend.append((name, PALETTE[n % len(PALETTE)]))
    for i, day in enumerate(days):
        y = float(height)
        for (name, values), (_, color) in zip(series.items(), legend):
            if not values[i]:
                continue
            h = values[i] / top * height
            y -= h
            bars.append(Bar(x=i * slot + slot * 0.15, y=y, width=slot * 0.7, height=h, color=color,
                            label=f"{day.isoformat()} {name}: {fmt(values[i])}"))
    return bars, legend, fmt(max(totals, default=0))
