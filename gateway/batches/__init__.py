"""Batches in both vendors' shapes (Anthropic's Message Batches, OpenAI's Batch API and its Files): stored
requests run by Celery workers through the same request path as live ones, at the batch price. The HTTP
operations are in gateway/api/batches.py."""
