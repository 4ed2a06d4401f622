"""Money as integer nano-USD (10^-9 USD): exact sums, no floats. Pure module."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

NANO_PER_USD = 10**9
NANO_PER_CENT = 10**7  # Stripe counts USD in integer cents
TOKENS_PER_PRICE_UNIT = 10**6  # prices are per million tokens
BASIS_POINTS = 10_000  # discounts are in basis points: 5000 = 50 %


def usd_to_nano(value: str | int | Decimal) -> int:
    """Parse a USD amount ("12.50") exactly; more than 9 decimal places or a non-number is a ValueError."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount in USD.") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not an amount in USD.")
    nano = amount * NANO_PER_USD
    if nano != nano.to_integral_value():
        raise ValueError(f"{value!r} has more than 9 decimal places.")
    return int(nano)


def cents_to_nano(cents: int) -> int:
    return cents * NANO_PER_CENT


def nano_to_cents(nano: int) -> int:
    """Whole cents of an amount that must be whole cents (a top-up); anything finer is a ValueError."""
    cents, rest = divmod(nano, NANO_PER_CENT)
    if rest:
        raise ValueError(f"{format_usd(nano, 9)} is not a whole number of cents.")
    return cents


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano) / NANO_PER_USD


def format_usd(nano: int, places: int = 2) -> str:
    """For people: "$12.35", "-$0.01"; tiny non-zero amounts keep enough places to show."""
    usd = nano_to_usd(abs(nano))
    shown = usd.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if shown == 0 and nano:
        shown = usd.normalize()
    return f"{'-' if nano < 0 else ''}${shown:f}"


def format_usd_exact(nano: int) -> str:
    """For prices: every significant decimal, at least two ("$3.00", "$0.075"), never rounded away."""
    places = max(2, -nano_to_usd(nano).normalize().as_tuple().exponent)
    return format_usd(nano, places=places)


def usd_string(nano: int) -> str:
    """For machines: the exact amount as a decimal string ("0.000123"), never a float."""
    text = f"{nano_to_usd(nano):.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def usage_cost_nano(*, input_tokens: int, output_tokens: int, cache_write_tokens: int, cache_read_tokens: int,
                    input_price: int, output_price: int, cache_write_price: int, cache_read_price: int,
                    web_searches: int = 0, web_search_price: int = 0, discount_bp: int = 0) -> int:
    """Cost of one request in nano-USD from prices per million tokens (and per web search), rounded half up
    once, on the total. `discount_bp` (basis points) comes off the token cost, as batch prices do: web
    searches are charged per search whatever the tier."""
    tokens = (input_tokens * input_price + output_tokens * output_price + cache_write_tokens * cache_write_price
              + cache_read_tokens * cache_read_price)
    scaled = tokens * (BASIS_POINTS - discount_bp) + web_searches * web_search_price * TOKENS_PER_PRICE_UNIT * BASIS_POINTS
    unit = TOKENS_PER_PRICE_UNIT * BASIS_POINTS
    return (scaled * 2 + unit) // (2 * unit)
