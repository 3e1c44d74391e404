"""Knowledge base names: one name picks a Chroma collection, a manifest slice and a lock."""

from __future__ import annotations

import re

from citewise.errors import InvalidKnowledgeBaseName

COLLECTION_PREFIX = "citewise-"
_VALID = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,46}[a-z0-9])?$")


def validate_kb(name: str) -> str:
    """Return ``name`` if it is a valid knowledge base name, else raise with the rule."""
    if not _VALID.match(name):
        raise InvalidKnowledgeBaseName(
            f"invalid knowledge base name {name!r}: use 1-48 lowercase letters, digits, "
            "'-' or '_', starting and ending with a letter or digit"
        )
    return name


def collection_name(kb: str) -> str:
    return f"{COLLECTION_PREFIX}{validate_kb(kb)}"
