from .decode import (LOCAL_SHELL_TOOL, REDACTED_THINKING_PREFIX, WEB_SEARCH_TOOL, StreamEncoder, decode_input_items,
                     decode_request, encode_response, error_body, namespaced_name, response_to_items)

__all__ = ["LOCAL_SHELL_TOOL", "REDACTED_THINKING_PREFIX", "WEB_SEARCH_TOOL", "StreamEncoder", "decode_input_items",
           "decode_request", "encode_response", "error_body", "namespaced_name", "response_to_items"]
