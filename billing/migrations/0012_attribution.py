# End users and tags on usage rows, and their daily rollup (issue 17).

import django.db.models.deletion
from django.db import migrations, models


def backfill(apps, schema_editor):
    """Usage already rolled up had no end user and no tags: each daily rollup is its "" row of both."""
    UsageRollup = apps.get_model("billing", "UsageRollup")
    AttributionRollup = apps.get_model("billing", "AttributionRollup")
    sums = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens", "web_search_requests", "cost_nano")
    batch = []
    for rollup in UsageRollup.objects.iterator(chunk_size=2000):
        for dimension in ("end_user", "tag"):
            batch.append(AttributionRollup(day=rollup.day, tenant_id=rollup.tenant_id, api_key_id=rollup.api_key_id,
                                           model=rollup.model, dimension=dimension, value="",
                                           **{name: getattr(rollup, name) for name in sums}))
        if len(batch) >= 2000:
            AttributionRollup.objects.bulk_create(batch)
            batch = []
    AttributionRollup.objects.bulk_create(batch)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_request_logging'),
        ('billing', '0011_batch_price_and_usage_batch_id'),
    ]

    operations = [
        migrations.AddField(
            model_name='usageevent',
            name='end_user',
            field=models.CharField(blank=True, max_length=256),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='tags',
            field=models.TextField(blank=True),
        ),
        migrations.AddIndex(
            model_name='usageevent',
            index=models.Index(condition=models.Q(('end_user', ''), _negated=True), fields=['api_key', 'end_user', 'created_at'], name='usage_by_key_end_user'),
        ),
        migrations.CreateModel(
            name='AttributionRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('requests', models.PositiveBigIntegerField(default=0)),
                ('errors', models.PositiveBigIntegerField(default=0)),
                ('input_tokens', models.PositiveBigIntegerField(default=0)),
                ('output_tokens', models.PositiveBigIntegerField(default=0)),
                ('cache_creation_input_tokens', models.PositiveBigIntegerField(default=0)),
                ('cache_read_input_tokens', models.PositiveBigIntegerField(default=0)),
                ('web_search_requests', models.PositiveBigIntegerField(default=0)),
                ('cost_nano', models.BigIntegerField(default=0)),
                ('day', models.DateField()),
                ('model', models.CharField(max_length=128)),
                ('dimension', models.CharField(choices=[('end_user', 'End User'), ('tag', 'Tag')], max_length=8)),
                ('value', models.CharField(blank=True, max_length=256)),
                ('api_key', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.apikey')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.tenant')),
            ],
            options={
                'ordering': ['-day', 'tenant', 'dimension', 'value'],
                'indexes': [models.Index(fields=['tenant', 'dimension', 'day'], name='attribution_by_tenant_day')],
                'constraints': [models.UniqueConstraint(fields=('dimension', 'day', 'api_key', 'model', 'value'), name='attribution_unique_dimension_day_key_model_value')],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
