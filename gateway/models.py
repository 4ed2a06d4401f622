from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


def provider_choices() -> list[tuple[str, str]]:
    from .providers import PROVIDERS

    return [(name, name) for name in PROVIDERS]


model_name_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", "Letters, digits and . _ : / - only.")


class CatalogModel(models.Model):
    """A model customers can call, by its id or by any of its aliases."""

    name = models.CharField(max_length=128, unique=True, validators=[model_name_validator],
                            help_text="The id clients send, e.g. claude-sonnet-4-6.")
    provider = models.CharField(max_length=32, default="anthropic", choices=provider_choices,
                                help_text="Provider module that serves it.")
    upstream_model = models.CharField(max_length=128, validators=[model_name_validator],
                                      help_text="The model id sent upstream.")
    default_max_tokens = models.PositiveIntegerField(default=4096, validators=[MinValueValidator(1)],
                                                     help_text="max_tokens when the client sends none.")
    max_output_tokens = models.PositiveIntegerField(default=32000, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)
    owned_by = models.CharField(max_length=64, default="anthropic")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(default_max_tokens__lte=models.F("max_output_tokens")),
                                   name="catalog_default_within_max"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if ModelAlias.objects.filter(name=self.name).exists():
            raise ValidationError({"name": f"{self.name!r} is already an alias of another model."})


class ModelAlias(models.Model):
    """Another name for a catalog model (e.g. gpt-4o -> claude-sonnet-4-6); unique across the catalog."""

    name = models.CharField(max_length=128, unique=True, validators=[model_name_validator])
    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="aliases")

    class Meta:
        verbose_name_plural = "model aliases"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if CatalogModel.objects.filter(name=self.name).exists():
            raise ValidationError({"name": f"{self.name!r} is already the id of a catalog model."})
