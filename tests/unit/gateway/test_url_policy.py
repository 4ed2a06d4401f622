"""Which URLs the upstream may be asked to fetch (gateway.url_policy): pure, no I/O."""

from __future__ import annotations

import pytest

from gateway.core import GatewayError
from gateway.url_policy import check_urls, url_refusal


@pytest.mark.parametrize("url", [
    "https://upload.wikimedia.org/a.png", "http://example.com/a.png", "https://8.8.8.8/a.png",
    "https://[2606:4700::1111]/a.png", "https://cdn.example.com:8443/x?y=1",
])
def test_public_http_urls_are_allowed(url):
    assert url_refusal(url) is None


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/", "http://10.0.0.5/a.png",
    "http://172.16.3.4/", "http://192.168.1.1/", "http://100.64.0.1/", "http://0.0.0.0/", "http://[::1]/",
    "http://[fe80::1]/", "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/",
    "http://localhost/", "http://api.localhost/", "http://metadata.google.internal/", "http://redis/",
    "http://printer.local/", "http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://0x7f.0x0.0x0.0x1/",
    "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/a.png", "data:image/png;base64,AAAA",
    "https:///nohost", "http://[not-an-ip/",
])
def test_internal_and_non_http_urls_are_refused(url):
    assert url_refusal(url) is not None


def test_allowed_hosts_and_allow_private_let_an_operator_open_them():
    assert url_refusal("http://images.corp.internal/a.png", allowed_hosts=[".corp.internal"]) is None
    assert url_refusal("http://10.1.2.3/a.png", allowed_hosts=["10.1.2.3"]) is None
    assert url_refusal("http://10.1.2.4/a.png", allowed_hosts=["10.1.2.3"]) is not None
    assert url_refusal("http://10.1.2.4/a.png", allow_private=True) is None
    assert url_refusal("file:///etc/passwd", allow_private=True) is not None  # schemes stay http(s)


def image(url: str) -> dict:
    return {"type": "image", "source": {"type": "url", "url": url}}


def test_every_url_block_is_checked_naming_its_param_tool_results_included():
    check_urls({"messages": [{"role": "user", "content": [image("https://example.com/a.png")]}]})
    with pytest.raises(GatewayError) as caught:
        check_urls({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "text", "text": "see"}, image("http://169.254.169.254/")]}]}]})
    assert caught.value.status == 400 and caught.value.param == "messages[1].content[0].content[1].source.url"
    with pytest.raises(GatewayError):
        check_urls({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "url", "url": "gopher://x/"}}]}]})
