from .decode import (JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION, StreamEncoder, decode_request, encode_response,
                     error_body)

__all__ = ["JSON_OBJECT_INSTRUCTION", "JSON_SCHEMA_INSTRUCTION", "StreamEncoder", "decode_request", "encode_response",
           "error_body"]
