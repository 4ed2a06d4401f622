"""Claude Sonnet 4.6 writes up to 128K output tokens, not the 64K it was seeded with: the Vercel AI SDK
asks for its full 128K by default, which the gateway refused. Only the seeded value is corrected; an
operator's own limit stays."""

from django.db import migrations


def raise_limit(apps, schema_editor):
    CatalogModel = apps.get_model("gateway", "CatalogModel")
    CatalogModel.objects.filter(name="claude-sonnet-4-6", max_output_tokens=64000).update(max_output_tokens=128000)


def lower_limit(apps, schema_editor):
    CatalogModel = apps.get_model("gateway", "CatalogModel")
    CatalogModel.objects.filter(name="claude-sonnet-4-6", max_output_tokens=128000).update(max_output_tokens=64000)


class Migration(migrations.Migration):
    dependencies = [("gateway", "0004_providers_and_deployments")]
    operations = [migrations.RunPython(raise_limit, lower_limit)]
