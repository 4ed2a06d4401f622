from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.forms import ApiKeySettingsForm
from accounts.models import Tenant
from accounts.services import api_key_issue

# ApiKeySettingsForm field (or key setting, for the service's errors) -> the option it came from.
OPTIONS = {
    "name": "--name",
    "models": "--models",
    "allowed_models": "--models",
    "rpm_limit": "--rpm",
    "tpm_limit": "--tpm",
    "budget_usd": "--budget-usd",
    "budget_nano": "--budget-usd",
    "budget_period": "--budget-period",
    "expires_at": "--expires-in-days",
}


def option_errors(errors: dict[str, list[str]], options: dict[str, str]) -> str:
    """Form or service errors as one line per option, e.g. "--rpm: Ensure this value is ..."."""
    lines = []
    for field, messages in errors.items():
        prefix = f"{options[field]}: " if field in options else ""
        lines += [prefix + message for message in messages]
    return "\n".join(lines)


class Command(BaseCommand):
    help = ("Issue an API key for a tenant, with optional limits (the same as the admin's and the dashboard's). "
            "The plaintext key is printed alone on the last line, once.")

    def add_arguments(self, parser):
        # Options are read as text and checked by ApiKeySettingsForm, so scripts get the console's messages.
        parser.add_argument("tenant", help="Tenant slug")
        parser.add_argument("--name", default="", help="A label for the key")
        parser.add_argument("--models", default="",
                            help="Comma-separated model ids or aliases the key may call (default: all)")
        parser.add_argument("--rpm", default="", help="Requests per minute (default: unlimited)")
        parser.add_argument("--tpm", default="", help="Tokens per minute (default: unlimited)")
        parser.add_argument("--budget-usd", default="", help="Spend allowed per budget period, in USD (default: none)")
        parser.add_argument("--budget-period", default="month", help="day or month (default: month)")
        parser.add_argument("--expires-in-days", default="", help="Days until the key expires (default: never)")

    def handle(self, *args, tenant, name, models, rpm, tpm, budget_usd, budget_period, expires_in_days, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        form = ApiKeySettingsForm(data={
            "name": name, "models": models, "rpm_limit": rpm, "tpm_limit": tpm, "budget_usd": budget_usd,
            "budget_period": budget_period, "expires_at": self._expires_at(expires_in_days),
        })
        if not form.is_valid():
            raise CommandError(option_errors(form.errors, OPTIONS))
        try:
            issued = api_key_issue(tenant=owner, via="command", **form.key_settings())
        except ValidationError as exc:
            raise CommandError(option_errors(exc.message_dict, OPTIONS) if hasattr(exc, "error_dict")
                               else " ".join(exc.messages)) from None
        self.stdout.write(f"Issued key {issued.api_key.display} for tenant {owner.slug}. It will not be shown again:")
        self.stdout.write(issued.plaintext)

    def _expires_at(self, days):
        if days in (None, ""):
            return None
        try:
            return timezone.now() + timedelta(days=int(days))
        except (ValueError, OverflowError):
            raise CommandError(f"--expires-in-days: {days!r} is not a whole number of days.") from None
