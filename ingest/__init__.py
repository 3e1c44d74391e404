"""The offline ingest face of Citewise: files in, chunks with vectors out."""
