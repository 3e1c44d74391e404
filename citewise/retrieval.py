"""Question -> scored chunks."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from citewise.errors import InvalidRequest
from citewise.store import ChunkStore, Hit

MAX_K = 100


def dense_search(
    store: ChunkStore, embeddings: Embeddings, kb: str, query: str, k: int
) -> list[Hit]:
    """Nearest chunks to ``query`` in knowledge base ``kb`` by embedding similarity."""
    query = query.strip()
    if not query:
        raise InvalidRequest("the query is empty")
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}")
    knowledge_base = store.knowledge_base(kb)
    return knowledge_base.search(embeddings.embed_query(query), k)
