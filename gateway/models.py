from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


def provider_choices() -> list[tuple[str, str]]:
    from .providers import PROVIDERS

    return [(name, name) for name in PROVIDERS]


model_name_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", "Letters, digits and . _ : / - only.")


class CatalogModel(models.Model):
    """A model customers can call, by its id or by any of its aliases; its deployments serve it."""

    class Capability(models.TextChoices):
        CHAT = "chat", "chat (messages, completions, responses)"
        EMBEDDINGS = "embeddings"
        RERANK = "rerank"

    name = models.CharField(max_length=128, unique=True, validators=[model_name_validator],
                            help_text="The id clients send, e.g. claude-sonnet-4-6.")
    capability = models.CharField(max_length=16, choices=Capability.choices, default=Capability.CHAT)
    default_max_tokens = models.PositiveIntegerField(default=4096, validators=[MinValueValidator(1)],
                                                     help_text="max_tokens when the client sends none.")
    max_output_tokens = models.PositiveIntegerField(default=32000, validators=[MinValueValidator(1)])
    context_window = models.PositiveIntegerField(default=200_000, validators=[MinValueValidator(1)],
                                                 help_text="Input plus output tokens the model takes, as published.")
    enabled = models.BooleanField(default=True)
    owned_by = models.CharField(max_length=64, default="anthropic")
    # Empty: the UPSTREAM_*_TIMEOUT_SECONDS settings.
    connect_timeout_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.1)])
    first_token_timeout_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)],
        help_text="Until the upstream's first byte (streams: first event); a slow deployment is skipped for the next.")
    timeout_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(1)],
                                        help_text="The whole upstream request.")
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


provider_name_validator = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}$", "Lower-case letters, digits, _ and - only.")


class Provider(models.Model):
    """An upstream service: its kind (the provider module that speaks to it) and where it is."""

    name = models.CharField(max_length=64, unique=True, validators=[provider_name_validator])
    kind = models.CharField(max_length=32, choices=provider_choices)
    base_url = models.URLField(blank=True, help_text="The API root, e.g. https://api.deepseek.com/v1. Empty: the "
                                                     "kind's default (Anthropic: ANTHROPIC_BASE_URL).")
    cooldown_seconds = models.PositiveIntegerField(
        default=30, help_text="How long a failing deployment is skipped before a request probes it again.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Credential(models.Model):
    """An API key of a provider, encrypted at rest (common.crypto); requests spread over a provider's
    enabled credentials by weight. An Anthropic provider without credentials uses ANTHROPIC_API_KEY."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=64)
    secret_encrypted = models.TextField(editable=False)
    hint = models.CharField(max_length=16, editable=False, help_text="The key's last four characters.")
    weight = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="credential_name_unique")]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name} (...{self.hint})"


class Deployment(models.Model):
    """Where a catalog model is served: a provider and its model id. The lowest priority number is tried
    first, spread by weight; higher numbers are the fallbacks."""

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    upstream_model = models.CharField(max_length=128, validators=[model_name_validator],
                                      help_text="The model id sent upstream.")
    priority = models.PositiveSmallIntegerField(default=0)
    weight = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority", "id"]

    def __str__(self) -> str:
        return f"{self.model.name} -> {self.provider.name}:{self.upstream_model}"
