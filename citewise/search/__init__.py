"""Finding passages: the local embedding model, the vector store, BM25, hybrid retrieval."""
