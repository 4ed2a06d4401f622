from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.forms import CreditForm
from accounts.management.commands.create_key import option_errors
from accounts.models import Tenant
from billing.services import credit_grant
from common.money import usd_string

OPTIONS = {"amount": "usd", "reason": "--reason"}


class Command(BaseCommand):
    help = "Post a credit to a tenant's ledger, e.g. `grant_credit acme 25.00 --reason 'March top-up'`."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="Tenant slug")
        parser.add_argument("usd", help="Amount in USD, e.g. 25 or 12.50 (exact; up to 9 decimal places)")
        parser.add_argument("--reason", required=True, help="Why: recorded in the ledger and the audit log")

    def handle(self, *args, tenant, usd, reason, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        form = CreditForm(data={"amount": usd, "reason": reason})
        if not form.is_valid():
            raise CommandError(option_errors(form.errors, OPTIONS))
        try:
            entry = credit_grant(tenant=owner, amount_nano=form.cleaned_data["amount"],
                                 reason=form.cleaned_data["reason"], via="command")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"Granted {usd_string(entry.amount_nano)} USD to {owner.slug}: ledger entry #{entry.seq}, "
                          f"balance {usd_string(entry.balance_after_nano)} USD.")
