"""Postgres-backed conversation history (server-side conversations and the Responses API)."""
