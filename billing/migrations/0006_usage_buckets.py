"""Usage buckets per minute, hour and day, filled from the usage already rolled up: the admin usage APIs
then show the past too, and the rollup task adds what it rolls up from here on."""

from datetime import UTC

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

SUMMED = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost_nano")


def fill_buckets(apps, schema_editor):
    UsageEvent = apps.get_model("billing", "UsageEvent")
    UsageBucket = apps.get_model("billing", "UsageBucket")
    rolled_up = UsageEvent.objects.filter(rolled_up_at__isnull=False)
    for width, trunc in (("1m", TruncMinute), ("1h", TruncHour), ("1d", TruncDay)):
        rows = (rolled_up.annotate(start=trunc("created_at", tzinfo=UTC))
                .values("start", "tenant_id", "api_key_id", "model", "endpoint")
                .annotate(requests=Count("id"), errors=Count("id", filter=Q(status="error")),
                          **{field: Sum(field) for field in SUMMED}).order_by())
        UsageBucket.objects.bulk_create((UsageBucket(width=width, **row) for row in rows.iterator()), batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_request_logging'),
        ('billing', '0005_usage_provider_and_trace'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageBucket',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('width', models.CharField(choices=[('1m', 'Minute'), ('1h', 'Hour'), ('1d', 'Day')], max_length=2)),
                ('start', models.DateTimeField(help_text="The bucket's first instant (UTC); it lasts one `width`.")),
                ('model', models.CharField(max_length=128)),
                ('endpoint', models.CharField(max_length=40)),
                ('requests', models.PositiveBigIntegerField(default=0)),
                ('errors', models.PositiveBigIntegerField(default=0)),
                ('input_tokens', models.PositiveBigIntegerField(default=0)),
                ('output_tokens', models.PositiveBigIntegerField(default=0)),
                ('cache_creation_input_tokens', models.PositiveBigIntegerField(default=0)),
                ('cache_read_input_tokens', models.PositiveBigIntegerField(default=0)),
                ('cost_nano', models.BigIntegerField(default=0)),
                ('api_key', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.apikey')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.tenant')),
            ],
            options={
                'ordering': ['width', '-start'],
                'indexes': [models.Index(fields=['tenant', 'width', 'start'], name='bucket_by_tenant_width_start')],
                'constraints': [models.UniqueConstraint(fields=('width', 'start', 'api_key', 'model', 'endpoint'), name='bucket_unique_width_start_key_model_endpoint')],
            },
        ),
        migrations.RunPython(fill_buckets, migrations.RunPython.noop),
    ]
