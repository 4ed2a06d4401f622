"""Which URLs a request may ask the upstream to fetch (image and document blocks of `source.type` url).

An upstream fetches what a client names, and an upstream may run inside the operator's network (a
vLLM next to the gateway, an OpenAI-compatible proxy): a URL such as http://169.254.169.254/ or
http://localhost:6379/ would make it a fetcher of the operator's internal services (SSRF). So, on the
internal representation once every codec has decoded its request:

- schemes http and https only (plain http stays allowed: public image hosts still serve it, and what
  makes a fetch dangerous is where it goes, checked next);
- IP literals must be global: private, loopback, link-local (the cloud metadata address), shared,
  reserved, multicast and unspecified ranges are refused, IPv4-mapped IPv6 forms included;
- host names that only resolve inside a network are refused: `localhost` and `*.localhost`, single
  labels (`redis`, `metadata`), `.local`, `.internal`, `.localdomain`, `.lan`, `.home.arpa`, and names
  whose last label is numeric (the decimal and hex spellings of an IP address);
- GATEWAY_URL_ALLOWED_HOSTS names hosts allowed whatever the rules above say (`.example.com`: every
  subdomain), and GATEWAY_URL_ALLOW_PRIVATE turns the address and name rules off for an operator whose
  upstreams are all outside their network.

Names are not resolved here: a public name pointing at a private address (DNS rebinding) gets past
this, and belongs to the network's egress rules. Pure: no I/O, no settings (the caller passes them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .core import invalid

_SCHEMES = ("http", "https")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".lan", ".home.arpa")


def _host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    return any(host == entry or (entry.startswith(".") and host.endswith(entry)) for entry in allowed_hosts)


def url_refusal(url: str, *, allowed_hosts: Iterable[str] = (), allow_private: bool = False) -> str | None:
    """Why `url` may not be fetched by an upstream, or None when it may."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme.lower() not in _SCHEMES:
        return "only http and https URLs are fetched"
    if not host:
        return "it has no host"
    if _host_allowed(host, allowed_hosts) or allow_private:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        address = getattr(address, "ipv4_mapped", None) or address
        if address.is_global and not address.is_multicast:
            return None
        return "it points at a private, loopback, link-local, reserved or multicast address"
    last_label = host.rsplit(".", 1)[-1]
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host or last_label.isdigit() \
            or last_label.startswith("0x"):
        return "it names a host inside a local network"
    return None


def _url_blocks(blocks: Any, param: str):
    """(param, url) of every url-sourced block in a content list, tool results' content included."""
    if not isinstance(blocks, list):
        return
    for j, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "url":
            yield f"{param}[{j}].source.url", source.get("url")
        if block.get("type") == "tool_result":
            yield from _url_blocks(block.get("content"), f"{param}[{j}].content")


def check_urls(params: dict[str, Any], *, allowed_hosts: Iterable[str] = (), allow_private: bool = False) -> None:
    """A 400 naming the first URL in `params` (an internal request) that an upstream may not fetch."""
    for i, message in enumerate(params.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        for param, url in _url_blocks(message.get("content"), f"messages[{i}].content"):
            reason = (url_refusal(url, allowed_hosts=allowed_hosts, allow_private=allow_private)
                      if isinstance(url, str) else "it is not a string")
            if reason is not None:
                raise invalid(f"The URL in '{param}' is not allowed: {reason}.", param)
