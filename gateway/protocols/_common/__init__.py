"""What the codecs share, so that no codec imports another's internals.

- `checks`: request checks that take the parameter path they report (`missing`, `wrong_type`, ...).
- `content`: Anthropic turns and content blocks (text, images, PDFs) as the codecs build them.
- `tools`: function and custom tools, tool call ids and arguments, `tool_choice`.
- `thinking`: reasoning efforts as thinking budgets, and when Anthropic would refuse thinking.
- `structured`: JSON answers (by instruction, or a JSON Schema through a forced tool).
- `cache_control`: prompt-cache breakpoints for clients whose protocol cannot mark them.

Pure like the codecs: no Django, no I/O.
"""
