"""One typed settings object, read once from the environment (prefix ``CITEWISE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Citewise has. Build it once (CLI or app factory) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="CITEWISE_", env_file=None, extra="ignore")

    home: Path = Field(
        default=Path(".citewise"),
        description="Where the embedded Chroma store, ingest manifests and locks live.",
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "citewise",
        description="Machine-wide cache for offline assets (tiktoken vocabularies).",
    )
    default_kb: str = Field(default="default", description="Knowledge base used when none given.")

    embedding_model: str = Field(
        default="all-MiniLM-L6-v2-int8",
        description="Local embedding model; recorded with each collection.",
    )
    embedding_batch_size: int = Field(default=64, ge=1, le=1024)
    embedding_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 means one per core."
    )
    embedding_max_tokens: int = Field(
        default=256, ge=16, le=512, description="Word pieces the model reads; the rest is cut."
    )

    tokenizer_encoding: str = Field(default="cl100k_base", description="tiktoken encoding.")
    chunk_tokens: int = Field(default=200, ge=16, le=4096, description="Chunk size in tokens.")
    chunk_overlap: int = Field(default=30, ge=0, description="Tokens shared by adjacent chunks.")
    max_file_mb: float = Field(default=50.0, gt=0, description="Larger files are refused.")
    parse_workers: int = Field(
        default=1, ge=0, description="Processes parsing documents while embedding runs; 0: inline."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("CITEWISE_CHUNK_OVERLAP must be smaller than CITEWISE_CHUNK_TOKENS")
        return self

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def manifest_path(self) -> Path:
        return self.home / "manifest.sqlite3"

    @property
    def lock_dir(self) -> Path:
        return self.home / "locks"
