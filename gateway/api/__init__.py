"""The gateway's HTTP surfaces: one module per protocol (openai, anthropic, gemini, jina) over the shared
request path (gateway.pipeline), the stored objects and reports they serve (conversations, responses,
usage, admin_usage, model_lists), and the operations endpoints (ops: health, metrics).

Each protocol has its own mount points, key header, error shape and model-list shape: one entry in
registry.py, from which config/urls.py mounts its APIs (base.build renders every failure in the
protocol's shape) and config/asgi.py picks the paths for the lean handler.
"""
