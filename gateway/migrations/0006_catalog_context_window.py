"""The published context window of each catalog model (shown on the prices page and in /v1/models)."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0005_sonnet_4_6_max_output'),
    ]

    operations = [
        migrations.AddField(
            model_name='catalogmodel',
            name='context_window',
            field=models.PositiveIntegerField(default=200000, help_text='Input plus output tokens the model takes, as published.', validators=[django.core.validators.MinValueValidator(1)]),
        ),
    ]
