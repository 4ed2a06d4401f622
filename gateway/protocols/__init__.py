"""Ingress codecs: one module per client protocol, each pure."""
