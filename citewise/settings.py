"""One typed settings object, read once from the environment (prefix ``CITEWISE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Citewise has. Build it once (CLI or app factory) and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="CITEWISE_", env_file=None, extra="ignore", env_ignore_empty=True
    )

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

    retrieval_mode: Literal["dense", "bm25", "hybrid"] = Field(
        default="hybrid", description="Default search mode."
    )
    retrieval_candidates: int = Field(
        default=50, ge=1, le=1000, description="Candidates each retriever passes to fusion."
    )
    fusion: Literal["zscore", "rrf"] = Field(
        default="zscore",
        description="How hybrid search fuses: standardised scores (zscore) or ranks (rrf).",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    bm25_k1: float = Field(default=0.7, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=0.6, ge=0, le=1, description="BM25 length normalisation.")
    dense_weight: float = Field(default=1.0, ge=0, description="Weight of the dense list.")
    bm25_weight: float = Field(default=1.0, ge=0, description="Weight of the BM25 list.")
    dedup_similarity: float = Field(
        default=0.97, gt=0, le=1.0, description="Drop a hit this similar to a better one."
    )

    answer_provider: Literal["extractive", "openai", "fake"] = Field(
        default="extractive",
        description="Who writes answers: extractive (offline, no LLM), openai (any "
        "OpenAI-compatible API) or fake (scripted replies, for tests).",
    )
    answer_k: int = Field(default=5, ge=1, le=20, description="Passages given to the answerer.")
    min_relevance: float = Field(
        default=0.52,
        ge=-1.0,
        le=2.0,
        description="Refuse when no passage reaches this relevance (cosine similarity plus "
        "half the share of question words it contains).",
    )
    max_question_chars: int = Field(default=2000, ge=10, description="Longer questions: 400.")
    max_history_turns: int = Field(default=20, ge=0, description="Earlier messages kept.")
    kb_base_urls: dict[str, str] = Field(
        default_factory=dict,
        description="JSON map of knowledge base -> URL its sources are published under, e.g. "
        '{"default": "https://help.example.com/"}; citation links are joined to it.',
    )
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint; unset means api.openai.com."
    )
    llm_api_key: SecretStr | None = Field(default=None, description="Key for the LLM endpoint.")
    llm_model: str = Field(default="gpt-4o-mini", description="Chat model name.")
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Per-request LLM timeout.")
    llm_max_retries: int = Field(default=2, ge=0, description="Retries on LLM errors.")
    fake_replies: list[str] = Field(
        default_factory=lambda: ["Citewise answers from your documents [1]."],
        description="Replies of the fake provider, in turn (JSON list).",
    )

    sse_ping_s: float = Field(default=15.0, gt=0, description="Heartbeat interval of streams.")

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
    def lexical_path(self) -> Path:
        return self.home / "bm25"

    @property
    def lock_dir(self) -> Path:
        return self.home / "locks"
