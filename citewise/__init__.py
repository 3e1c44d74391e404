"""Citewise core: the domain shared by the ingest pipeline and the HTTP service."""

__version__ = "0.1.0"
