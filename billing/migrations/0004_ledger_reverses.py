"""An entry can be reversed once. On SQLite the AddField rebuilds the table: its triggers come back."""

import django.db.models.deletion
from django.db import migrations, models

from billing.ledger_triggers import sqlite_triggers_reinstall


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0003_ledger_triggers_seed_prices'),
    ]

    operations = [
        migrations.AddField(
            model_name='ledgerentry',
            name='reverses',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='reversed_by', to='billing.ledgerentry'),
        ),
        migrations.RunPython(sqlite_triggers_reinstall, migrations.RunPython.noop),
    ]
