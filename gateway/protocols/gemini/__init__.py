from .decode import StreamEncoder, decode_request, encode_response, error_body

__all__ = ["StreamEncoder", "decode_request", "encode_response", "error_body"]
