"""What Claude Code sends: a request body and its beta header, for the fake's and the gateway's tests."""

# What Claude Code 2.1 sends (`claude -p`), trimmed to one tool: every field must pass the real API.
CLAUDE_CODE_BODY = {
    "model": "claude-sonnet-4-6", "max_tokens": 32000, "stream": True,
    "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "ttl": "1h",
                                                                                  "scope": "global"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
    "tools": [{"name": "Read", "description": "Reads a file", "strict": True, "defer_loading": False,
               "eager_input_streaming": True, "input_examples": [{"file_path": "/tmp/x"}],
               "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                                "required": ["file_path"], "additionalProperties": False}}],
    "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": "user_abc_account__session_1"},
}

CLAUDE_CODE_BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
                     "context-management-2025-06-27,prompt-caching-scope-2026-01-05,effort-2025-11-24")
