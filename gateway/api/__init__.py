"""The gateway's HTTP surfaces: one module per protocol (openai, anthropic, gemini, jina) over the shared
request path (gateway.pipeline), the stored objects and reports they serve (conversations, responses,
usage, admin_usage, model_lists), and the operations endpoints (ops: health, metrics).

Each protocol has its own mount points, key header and error shape (base.build renders every failure in
it). The admin usage APIs and the Anthropic SDK's routes at the root are mounted before the OpenAI API,
whose catch-all would otherwise answer them (config/urls.py).
"""
