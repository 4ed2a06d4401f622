"""The ledger's invariant in the database, and launch prices for the seeded catalog.

Triggers make `billing_ledgerentry` an append-only chain per tenant: an entry must carry the next `seq`
and `balance_after_nano` = previous balance + `amount_nano`, so the last entry's balance always equals
the sum of the tenant's entries, whoever writes to the table. UPDATE and DELETE are refused.
"""

from datetime import UTC, datetime

from django.db import migrations

from billing.ledger_triggers import triggers_down, triggers_up

# USD per million tokens: input, output, cache write (5-minute, 1.25x input), cache read (0.1x input).
LAUNCH_PRICES = {
    "claude-opus-4-6": ("5", "25", "6.25", "0.50"),
    "claude-sonnet-4-6": ("3", "15", "3.75", "0.30"),
    "claude-haiku-4-5": ("1", "5", "1.25", "0.10"),
}


def seed_prices(apps, schema_editor):
    from decimal import Decimal

    CatalogModel = apps.get_model("gateway", "CatalogModel")
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for name, prices in LAUNCH_PRICES.items():
        model = CatalogModel.objects.filter(name=name).first()
        if model is None:
            continue
        nano = [int(Decimal(p) * 10**9) for p in prices]
        ModelPrice.objects.get_or_create(
            model=model, effective_from=datetime(2025, 1, 1, tzinfo=UTC),
            defaults=dict(input_nano_per_mtok=nano[0], output_nano_per_mtok=nano[1],
                          cache_write_nano_per_mtok=nano[2], cache_read_nano_per_mtok=nano[3]),
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_prices_ledger_rollups"), ("gateway", "0002_seed_catalog")]

    operations = [
        migrations.RunPython(triggers_up, triggers_down),
        migrations.RunPython(seed_prices, migrations.RunPython.noop),
    ]
