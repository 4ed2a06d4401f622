"""Seed the catalog with Claude models and the OpenAI names clients already use."""

from django.db import migrations

SEED = [
    # name, default max_tokens, max output tokens, aliases
    ("claude-opus-4-6", 4096, 128000, ["gpt-4"]),
    ("claude-sonnet-4-6", 4096, 64000, ["gpt-4o", "gpt-4-turbo"]),
    ("claude-haiku-4-5", 4096, 64000, ["gpt-3.5-turbo", "gpt-4o-mini"]),
]


def seed(apps, schema_editor):
    CatalogModel = apps.get_model("gateway", "CatalogModel")
    ModelAlias = apps.get_model("gateway", "ModelAlias")
    for name, default_max, max_output, aliases in SEED:
        model, _ = CatalogModel.objects.get_or_create(
            name=name,
            defaults={"upstream_model": name, "default_max_tokens": default_max, "max_output_tokens": max_output},
        )
        for alias in aliases:
            ModelAlias.objects.get_or_create(name=alias, defaults={"model": model})


def unseed(apps, schema_editor):
    apps.get_model("gateway", "CatalogModel").objects.filter(name__in=[row[0] for row in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("gateway", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
