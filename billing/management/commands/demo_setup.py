from django.core.management.base import BaseCommand

from accounts.models import Tenant
from accounts.services import api_key_issue, tenant_create
from billing.selectors import tenant_available_nano
from billing.services import credit_grant

DEMO_CREDIT_NANO = 100 * 10**9  # $100, topped up whenever the demo tenant has run dry

SNIPPET = """
Gatehouse demo key (shown once): {key}

  curl {base}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "claude-sonnet-4-6", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  reply = client.chat.completions.create(model="claude-sonnet-4-6",
                                         messages=[{{"role": "user", "content": "Hello!"}}])
  print(reply.choices[0].message.content)

Dashboard: sign up at {base}/signup/ (operators: python manage.py createsuperuser, then {base}/admin/)
"""


class Command(BaseCommand):
    help = ("Ensure a 'demo' tenant with prepaid credit exists, issue it a fresh key and print ready-to-paste "
            "snippets.")

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url, **options):
        tenant = Tenant.objects.filter(slug="demo").first() or tenant_create(slug="demo", name="Demo")
        if tenant_available_nano(tenant.pk) <= 0:
            credit_grant(tenant=tenant, amount_nano=DEMO_CREDIT_NANO, reason="demo credit", via="command")
        issued = api_key_issue(tenant=tenant, name="demo")
        self.stdout.write(SNIPPET.format(key=issued.plaintext, base=base_url.rstrip("/")))
