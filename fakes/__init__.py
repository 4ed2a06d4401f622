"""Fake upstream servers that speak real provider wire protocols (Anthropic, OpenAI-compatible, Stripe),
the fault proxy in front of them, and their shared serving code: for tests, bench/ and scripts/serve.

Run from the checkout (`python -m fakes.anthropic`), not installed: pyproject.toml's package list leaves
this package out of the wheel, so a deployment carries no fake upstream.
"""
