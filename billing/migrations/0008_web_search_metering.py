"""Web searches on the usage row and the price version (nano-USD per search)."""

import django.core.validators
from django.db import migrations, models

# Anthropic's list price for its web search tool: $10 per 1,000 searches.
CLAUDE_WEB_SEARCH_NANO = 10_000_000


def price_claude_web_search(apps, schema_editor):
    # Existing price rows are given the per-search price rather than a new version: until now no request
    # was ever charged for a search, so no usage row carries a different per-search price.
    ModelPrice = apps.get_model("billing", "ModelPrice")
    ModelPrice.objects.filter(model__name__startswith="claude-").update(web_search_nano=CLAUDE_WEB_SEARCH_NANO)


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0007_payments'),
        ('gateway', '0005_sonnet_4_6_max_output'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='modelprice',
            name='price_not_negative',
        ),
        migrations.AddField(
            model_name='modelprice',
            name='web_search_nano',
            field=models.BigIntegerField(default=0, help_text='nano-USD per web search.', validators=[django.core.validators.MinValueValidator(0)]),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='web_search_requests',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='usagerollup',
            name='web_search_requests',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='usagebucket',
            name='web_search_requests',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('cache_read_nano_per_mtok__gte', 0), ('cache_write_nano_per_mtok__gte', 0), ('input_nano_per_mtok__gte', 0), ('output_nano_per_mtok__gte', 0), ('web_search_nano__gte', 0)), name='price_not_negative'),
        ),
        migrations.RunPython(price_claude_web_search, migrations.RunPython.noop),
    ]
