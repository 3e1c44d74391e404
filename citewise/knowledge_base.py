"""Knowledge base names: one name picks a Chroma collection, a manifest slice and a lock."""

from __future__ import annotations

import re

from citewise.errors import InvalidKnowledgeBaseName

COLLECTION_PREFIX = "citewise-"
# A gated ingest builds the next state of ``kb`` as ``kb.staging``: no caller can name it,
# since '.' is not allowed in knowledge base names, and no real knowledge base can collide.
STAGING_SUFFIX = ".staging"
# Matched with fullmatch: '$' would also accept a name ending in a line break ("docs\n").
_VALID = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,46}[a-z0-9])?")


def staging_of(kb: str) -> str:
    return validate_kb(kb) + STAGING_SUFFIX


def validate_kb(name: str, *, internal: bool = False) -> str:
    """Return ``name`` if it is a valid knowledge base name, else raise with the rule.

    ``internal`` also accepts a staging name (the store and the pipeline use those; callers
    of the API cannot)."""
    if internal and name.endswith(STAGING_SUFFIX):
        validate_kb(name.removesuffix(STAGING_SUFFIX))
        return name
    if not _VALID.fullmatch(name):
        raise InvalidKnowledgeBaseName(
            f"invalid knowledge base name {name!r}: use 1-48 lowercase letters, digits, "
            "'-' or '_', starting and ending with a letter or digit"
        )
    return name


def collection_name(kb: str) -> str:
    return f"{COLLECTION_PREFIX}{validate_kb(kb, internal=True)}"
