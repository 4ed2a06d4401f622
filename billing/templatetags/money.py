from django import template

from common.money import cents_to_nano, format_usd

register = template.Library()


@register.filter
def usd(nano):
    """Nano-USD as "$1.23" (tiny amounts keep the places they need)."""
    return "" if nano is None else format_usd(int(nano))


@register.filter
def cents(value):
    """Integer cents (Stripe's amounts) as "$20.00"."""
    return "" if value is None else format_usd(cents_to_nano(int(value)))
