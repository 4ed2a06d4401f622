"""Monthly statements: the ledger of one tenant and calendar month (UTC), as a PDF and a CSV.

Every figure comes from the ledger, to the nano-USD:

    opening  = balance_after of the tenant's last entry before the month (0 without one)
    closing  = opening + credits + usage + refunds + adjustments  (the month's entries, by kind)

and the usage lines (per model and key) are the usage rows billed by the month's debits, so they sum to
the usage total exactly. Usage is therefore shown in the month it was debited: a request in the last
minute of a month is debited by the rollup in the first minute of the next, and appears there.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from accounts.models import Tenant
from common.money import format_usd, usd_string

from .models import LedgerEntry, Statement, UsageEvent

_KIND_TOTALS = {LedgerEntry.Kind.CREDIT: "credits_nano", LedgerEntry.Kind.DEBIT: "usage_nano",
                LedgerEntry.Kind.REFUND: "refunds_nano", LedgerEntry.Kind.ADJUSTMENT: "adjustments_nano"}


@dataclass
class StatementData:
    tenant: Tenant
    month: date
    opening_nano: int
    closing_nano: int
    totals: dict[str, int]  # credits_nano, usage_nano, refunds_nano, adjustments_nano
    entries: list[dict]  # the month's credits, refunds and adjustments, one by one
    usage: list[dict] = field(default_factory=list)  # per model and key


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def previous_month(now: datetime) -> date:
    now = now.astimezone(UTC)
    return date(now.year - 1, 12, 1) if now.month == 1 else date(now.year, now.month - 1, 1)


def statement_data(*, tenant: Tenant, month: date) -> StatementData:
    """The month's figures, read from the ledger; raises if they do not reconcile (they always should)."""
    start, end = month_bounds(month)
    ledger = LedgerEntry.objects.filter(tenant=tenant)
    opening = ledger.filter(created_at__lt=start).order_by("-seq").values_list("balance_after_nano", flat=True).first()
    closing = ledger.filter(created_at__lt=end).order_by("-seq").values_list("balance_after_nano", flat=True).first()
    in_month = ledger.filter(created_at__gte=start, created_at__lt=end)
    totals = dict.fromkeys(_KIND_TOTALS.values(), 0)
    for kind, amount in in_month.values_list("kind").annotate(total=Sum("amount_nano")):
        totals[_KIND_TOTALS[kind]] = amount
    entries = list(in_month.exclude(kind=LedgerEntry.Kind.DEBIT).order_by("seq")
                   .values("seq", "created_at", "kind", "reason", "amount_nano", "balance_after_nano"))
    usage = list(
        UsageEvent.objects.filter(ledger_entry__in=in_month.filter(kind=LedgerEntry.Kind.DEBIT))
        .values("model", "api_key_id", "api_key__name", "api_key__public_id")
        .annotate(requests=Count("id"), input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"),
                  cache_creation_input_tokens=Sum("cache_creation_input_tokens"),
                  cache_read_input_tokens=Sum("cache_read_input_tokens"),
                  web_search_requests=Sum("web_search_requests"), cost_nano=Sum("cost_nano"))
        .order_by("model", "api_key_id")
    )
    data = StatementData(tenant=tenant, month=month, opening_nano=opening or 0, closing_nano=closing or 0,
                         totals=totals, entries=entries, usage=usage)
    if data.closing_nano != data.opening_nano + sum(totals.values()):
        raise ValueError(f"ledger of {tenant} does not reconcile for {month:%Y-%m}")
    if sum(row["cost_nano"] for row in usage) != -totals["usage_nano"]:
        raise ValueError(f"usage of {tenant} does not add up to its debits for {month:%Y-%m}")
    return data


def statement_generate(*, tenant: Tenant, month: date) -> Statement:
    """The tenant's statement for `month` (the first of a month that has ended): made once, then kept.

    Idempotent, so the monthly task may run twice: a second run (or a concurrent one, which loses the
    unique constraint race) returns the statement already stored.
    """
    existing = Statement.objects.filter(tenant=tenant, month=month).first()
    if existing is not None:
        return existing
    if month_bounds(month)[1] > datetime.now(UTC):
        raise ValueError(f"{month:%Y-%m} has not ended yet.")
    data = statement_data(tenant=tenant, month=month)
    try:
        with transaction.atomic():
            return Statement.objects.create(
                tenant=tenant, month=month, opening_nano=data.opening_nano, closing_nano=data.closing_nano,
                **data.totals, pdf=statement_pdf(data), csv=statement_csv(data))
    except IntegrityError:
        return Statement.objects.get(tenant=tenant, month=month)


def statements_generate_monthly(*, now: datetime | None = None) -> int:
    """Last month's statement for every tenant with ledger entries by its end; returns how many were new."""
    month = previous_month(now or datetime.now(UTC))
    end = month_bounds(month)[1]
    made = 0
    for tenant in Tenant.objects.filter(ledger_entries__created_at__lt=end).distinct().order_by("pk"):
        if not Statement.objects.filter(tenant=tenant, month=month).exists():
            statement_generate(tenant=tenant, month=month)
            made += 1
    return made


# --- Documents -----------------------------------------------------------------------------------------

CSV_COLUMNS = ("section", "date", "description", "model", "api_key", "requests", "input_tokens", "output_tokens",
               "cache_creation_input_tokens", "cache_read_input_tokens", "web_search_requests", "amount_usd",
               "amount_nano")


def _key_label(row: dict) -> str:
    return f"{row['api_key__name'] or '(unnamed key)'} ({row['api_key__public_id']})"


def statement_csv(data: StatementData) -> str:
    """One line per figure; the `amount_nano` of every line but the balances sums to closing - opening."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    start, end = month_bounds(data.month)

    def amount(nano: int) -> dict:
        return {"amount_usd": usd_string(nano), "amount_nano": nano}

    writer.writerow({"section": "opening_balance", "date": start.date().isoformat(), **amount(data.opening_nano)})
    for entry in data.entries:
        writer.writerow({"section": entry["kind"], "date": entry["created_at"].astimezone(UTC).date().isoformat(),
                         "description": f"#{entry['seq']} {entry['reason']}", **amount(entry["amount_nano"])})
    for row in data.usage:
        writer.writerow({"section": "usage", "model": row["model"], "api_key": _key_label(row),
                         **{name: row[name] for name in CSV_COLUMNS[5:11]}, **amount(-row["cost_nano"])})
    writer.writerow({"section": "closing_balance", "date": end.date().isoformat(), **amount(data.closing_nano)})
    return out.getvalue()


def statement_pdf(data: StatementData) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    title = f"Statement {data.month:%B %Y}"
    doc = SimpleDocTemplate(buffer, pagesize=A4, title=f"{title} — {data.tenant.name}", author="Gatehouse",
                            leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm)
    start, end = month_bounds(data.month)
    grid = TableStyle([("FONTSIZE", (0, 0), (-1, -1), 8), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                       ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                       ("ALIGN", (1, 1), (-1, -1), "RIGHT"), ("VALIGN", (0, 0), (-1, -1), "TOP")])

    def table(rows: list[list], widths: list[float] | None = None) -> Table:
        result = Table(rows, colWidths=widths, repeatRows=1)
        result.setStyle(grid)
        return result

    story = [
        Paragraph(title, styles["Title"]),
        Paragraph(f"{data.tenant.name} ({data.tenant.slug}) — {start:%Y-%m-%d} to {end:%Y-%m-%d} (UTC, end "
                  "exclusive). Amounts in USD; the exact amount is in the CSV.", styles["Normal"]),
        Spacer(1, 6 * mm),
        table([["", "Amount"],
               ["Opening balance", format_usd(data.opening_nano)],
               ["Credits", format_usd(data.totals["credits_nano"])],
               ["Usage", format_usd(data.totals["usage_nano"])],
               ["Refunds", format_usd(data.totals["refunds_nano"])],
               ["Adjustments", format_usd(data.totals["adjustments_nano"])],
               ["Closing balance", format_usd(data.closing_nano)]], [110 * mm, 50 * mm]),
        Spacer(1, 6 * mm),
        Paragraph("Usage by model and key", styles["Heading2"]),
    ]
    if data.usage:
        cell = styles["BodyText"].clone("cell", fontSize=8, leading=9)
        story.append(table(
            [["Model", "Key", "Requests", "Input", "Output", "Cache w/r", "Searches", "Cost"]]
            + [[Paragraph(row["model"], cell), Paragraph(_key_label(row), cell), row["requests"], row["input_tokens"],
                row["output_tokens"], f"{row['cache_creation_input_tokens']}/{row['cache_read_input_tokens']}",
                row["web_search_requests"], format_usd(row["cost_nano"])] for row in data.usage],
            [34 * mm, 38 * mm, 15 * mm, 17 * mm, 17 * mm, 19 * mm, 16 * mm, 18 * mm]))
    else:
        story.append(Paragraph("No usage was billed this month.", styles["Normal"]))
    story += [Spacer(1, 6 * mm), Paragraph("Credits, refunds and adjustments", styles["Heading2"])]
    if data.entries:
        cell = styles["BodyText"].clone("cell", fontSize=8, leading=9)
        story.append(table(
            [["Date", "Entry", "Kind", "Reason", "Amount", "Balance after"]]
            + [[f"{entry['created_at'].astimezone(UTC):%Y-%m-%d}", f"#{entry['seq']}", entry["kind"],
                Paragraph(entry["reason"], cell), format_usd(entry["amount_nano"]),
                format_usd(entry["balance_after_nano"])] for entry in data.entries],
            [20 * mm, 13 * mm, 20 * mm, 67 * mm, 27 * mm, 27 * mm]))
    else:
        story.append(Paragraph("None this month.", styles["Normal"]))
    doc.build(story)
    return buffer.getvalue()
