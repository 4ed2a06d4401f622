from django import template

from billing.money import format_usd

register = template.Library()


@register.filter
def usd(nano):
    """Nano-USD as "$1.23" (tiny amounts keep the places they need)."""
    return "" if nano is None else format_usd(int(nano))
