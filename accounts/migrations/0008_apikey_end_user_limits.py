# Per-end-user RPM and budget on a key (issue 17).

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0007_auto_cache_control'),
    ]

    operations = [
        migrations.AddField(
            model_name='apikey',
            name='end_user_rpm_limit',
            field=models.PositiveIntegerField(blank=True, help_text='Requests per minute per end user; empty: unlimited.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='apikey',
            name='end_user_budget_nano',
            field=models.BigIntegerField(blank=True, help_text='Spend per end user per budget period in nano-USD; empty: none.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
    ]
