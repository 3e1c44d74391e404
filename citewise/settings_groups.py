"""Settings groups, one per component: the base class and the groups of storage, search,
ingest and observability (answering and serving: ``citewise.settings_serving``).
``citewise.settings`` puts them together.

Each group reads its own fields from the environment, then from a ``.env`` file
(``citewise.settings_env``); lists and maps are JSON, which the group decodes itself. A field's
environment variable is its ``validation_alias`` (``CITEWISE_`` and the field's old flat name,
e.g. ``CITEWISE_REDIS_URL`` for ``redis.url``), never ``CITEWISE_`` plus its short name: groups
leave ``populate_by_name`` off because pydantic-settings would then also read ``CITEWISE_URL``
and the like. A group's constructor maps short names onto the variables itself, so
``RedisSettings(url=...)`` works.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from citewise.settings_env import DEFAULT_ENV_FILE, OFF, DotEnvFile, env_file


def env(name: str, default: Any = PydanticUndefined, **constraints: Any) -> Any:
    """A field read from ``CITEWISE_<name>`` (its name in the flat settings of old)."""
    return Field(default, validation_alias=f"CITEWISE_{name}", **constraints)


class SettingsGroup(BaseSettings):
    """A component's settings: keyword arguments by field name or by variable name; the
    environment supplies the rest, and a keyword that is neither raises ``TypeError``."""

    model_config = SettingsConfigDict(
        env_prefix="CITEWISE_",
        env_file=None,
        extra="ignore",  # the other groups' variables share the prefix
        env_ignore_empty=True,
        hide_input_in_errors=True,  # errors must not print keys and secrets from the environment
        enable_decoding=False,  # lists and maps: JSON decoded by _decode_json below
    )

    def __init__(self, **values: Any) -> None:
        variables = self.variables()
        unknown = set(values) - variables.keys() - set(variables.values())
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {sorted(unknown)[0]!r}")
        super().__init__(**{variables.get(name, name): v for name, v in values.items()})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords, then the environment, then the ``.env`` file (``citewise.settings_env``)."""
        return init_settings, env_settings, DotEnvFile(settings_cls, env_file())

    @field_validator("*", mode="before")
    @classmethod
    def _decode_json(cls, value: Any, info: ValidationInfo) -> Any:
        """Lists and maps are JSON. Decoded here rather than by pydantic-settings, whose error
        for a value that is not JSON names the field but not its variable."""
        if not isinstance(value, str) or info.field_name not in cls._json_fields():
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:  # its message quotes no part of the value
            raise ValueError(f"expected JSON ({error.msg}, character {error.pos + 1})") from None

    @classmethod
    @cache
    def _json_fields(cls) -> frozenset[str]:
        """Fields holding a list, a map or a model, less those that parse text themselves."""
        return frozenset(
            name
            for name, info in cls.model_fields.items()
            if NoDecode not in info.metadata and _is_structured(info.annotation)
        )

    @classmethod
    @cache
    def variables(cls) -> dict[str, str]:
        """Field name -> the environment variable it is read from."""
        names = {}
        for name, info in cls.model_fields.items():
            assert isinstance(info.validation_alias, str), f"{cls.__name__}.{name}: no variable"
            names[name] = info.validation_alias
        return names


def _is_structured(annotation: Any) -> bool:
    if get_origin(annotation) in (list, dict):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_is_structured(arg) for arg in get_args(annotation) if arg is not type(None))


class CoreSettings(SettingsGroup):
    """Where Citewise keeps its state and caches, and the knowledge base used by default."""

    home: Path = env(
        "HOME",
        Path(".citewise"),
        description="Where the embedded Chroma store, ingest manifests and locks live.",
    )
    cache_dir: Path = env(
        "CACHE_DIR",
        Path.home() / ".cache" / "citewise",
        description="Machine-wide cache for offline assets (tiktoken vocabularies).",
    )
    default_kb: str = env(
        "DEFAULT_KB", "default", description="Knowledge base used when none given."
    )
    env_file: Path | None = env(
        "ENV_FILE",
        DEFAULT_ENV_FILE,
        description="File of CITEWISE_ variables (NAME=value lines) read at start, relative to "
        "the current directory; a variable set in the environment wins over the file. 'off': "
        "none. Read from the environment only.",
    )

    @field_validator("env_file", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == OFF else value


class ChromaSettings(SettingsGroup):
    """The Chroma server, when there is one (``citewise.search.store``)."""

    url: str | None = env(
        "CHROMA_URL",
        None,
        description="Chroma server (http://host:port or https://host[:port]) shared by every "
        "replica and worker; unset: the embedded store under CITEWISE_HOME/chroma.",
    )
    token: SecretStr | None = env(
        "CHROMA_TOKEN",
        None,
        description="Token sent to the Chroma server as 'Authorization: Bearer <token>'.",
    )
    timeout_s: float = env(
        "CHROMA_TIMEOUT_S",
        15.0,
        gt=0,
        le=600,
        description="Connect and read timeout of each request to the Chroma server.",
    )
    bm25_sync_s: float = env(
        "BM25_SYNC_S",
        5.0,
        ge=0,
        description="With a Chroma server: how often a serving process compares its copy of a "
        "knowledge base's BM25 index with the generation the last ingest recorded in Chroma "
        "(0: on every request).",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
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

    @property
    def server(self) -> bool:
        """Whether the store is a Chroma server (shared) rather than embedded (this machine)."""
        return self.url is not None


class EmbeddingSettings(SettingsGroup):
    """The local embedding model (``citewise.search.embeddings``)."""

    model: str = env(
        "EMBEDDING_MODEL",
        "all-MiniLM-L6-v2-int8",
        description="Local embedding model; recorded with each collection.",
    )
    batch_size: int = env(
        "EMBEDDING_BATCH_SIZE",
        16,
        ge=1,
        le=1024,
        description="Texts per model call (length-sorted first). 16 embeds 1.4x as many chunks "
        "a second as 64 on 2 cores (bench/embedding_speed.py).",
    )
    threads: int = env(
        "EMBEDDING_THREADS",
        0,
        ge=0,
        description="onnxruntime intra-op threads; 0 means one per core.",
    )
    max_tokens: int = env(
        "EMBEDDING_MAX_TOKENS",
        256,
        ge=16,
        le=512,
        description="Word pieces the model reads; the rest is cut.",
    )
    device: Literal["cpu", "cuda"] = env(
        "EMBEDDING_DEVICE",
        "cpu",
        description="Where the model runs: cpu, or cuda (onnxruntime's CUDA provider, when "
        "the installed onnxruntime has it and a GPU answers; otherwise the CPU, said once in "
        "the log).",
    )


class ChunkingSettings(SettingsGroup):
    """How documents are cut into passages (``ingest.chunking``)."""

    encoding: str = env("TOKENIZER_ENCODING", "cl100k_base", description="tiktoken encoding.")
    tokens: int = env("CHUNK_TOKENS", 200, ge=16, le=4096, description="Chunk size in tokens.")
    overlap: int = env("CHUNK_OVERLAP", 30, ge=0, description="Tokens shared by adjacent chunks.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap >= self.tokens:
            raise ValueError("CITEWISE_CHUNK_OVERLAP must be smaller than CITEWISE_CHUNK_TOKENS")
        return self


class RetrievalSettings(SettingsGroup):
    """Search: modes, BM25, fusion, deduplication (``citewise.search.retrieval``)."""

    mode: Literal["dense", "bm25", "hybrid"] = env(
        "RETRIEVAL_MODE", "hybrid", description="Default search mode."
    )
    candidates: int = env(
        "RETRIEVAL_CANDIDATES",
        50,
        ge=1,
        le=1000,
        description="Candidates each retriever passes to fusion.",
    )
    fusion: Literal["zscore", "rrf"] = env(
        "FUSION",
        "zscore",
        description="How hybrid search fuses: standardised scores (zscore) or ranks (rrf).",
    )
    rrf_k: int = env("RRF_K", 60, ge=1, description="Reciprocal rank fusion constant.")
    bm25_k1: float = env("BM25_K1", 0.7, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = env("BM25_B", 0.6, ge=0, le=1, description="BM25 length normalisation.")
    dense_weight: float = env("DENSE_WEIGHT", 1.0, ge=0, description="Weight of the dense list.")
    bm25_weight: float = env("BM25_WEIGHT", 1.0, ge=0, description="Weight of the BM25 list.")
    dedup_similarity: float = env(
        "DEDUP_SIMILARITY",
        0.97,
        gt=0,
        le=1.0,
        description="Drop a hit this similar to a better one.",
    )
    passage_cache_size: int = env(
        "PASSAGE_CACHE_SIZE",
        4096,
        ge=0,
        description="Passages (text, metadata, vector) each process keeps in memory after a "
        "search returned them, so popular ones skip a store read; 0 turns it off.",
    )


class LimitSettings(SettingsGroup):
    """How large a request body, an upload or a document may be: sizes, counts, and what a
    hostile file could expand into (``api.admission``, ``api.uploads``, ``ingest.pipeline``,
    ``ingest.guards``)."""

    max_file_mb: float = env("MAX_FILE_MB", 50.0, gt=0, description="Larger files are refused.")
    max_uncompressed_mb: float = env(
        "MAX_UNCOMPRESSED_MB",
        100.0,
        gt=0,
        description="A Word file whose parts unpack to more than this is refused, before "
        "anything is inflated (parsing costs many times the XML's size in memory), as is a PDF "
        "whose page contents do, each page that reuses a stream counting it again.",
    )
    max_compression_ratio: float = env(
        "MAX_COMPRESSION_RATIO",
        100.0,
        gt=1,
        description="A Word file with a part over 1 MB that inflates more than this many times "
        "its stored size is refused as a zip bomb, as is a PDF whose page contents, over 1 MB in "
        "all, are that many times the file's size.",
    )
    max_nesting_depth: int = env(
        "MAX_NESTING_DEPTH",
        256,
        ge=8,
        le=256,
        description="HTML elements, or Markdown lists and quotes, nested deeper refuse the "
        "document. At most 256: the HTML parser silently drops anything deeper.",
    )
    parse_timeout_s: float = env(
        "PARSE_TIMEOUT_S",
        120.0,
        ge=0.1,
        description="A file still parsing after this many seconds is stopped and reported as "
        "failed; the run goes on (CLI, --watch and jobs alike). Not applied with "
        "CITEWISE_PARSE_WORKERS=0.",
    )
    parse_memory_mb: int = env(
        "PARSE_MEMORY_MB",
        2048,
        ge=64,
        description="A parse process growing past this resident size is stopped and its file "
        "reported as failed. Not applied with CITEWISE_PARSE_WORKERS=0.",
    )
    max_body_mb: float = env(
        "MAX_BODY_MB",
        1.0,
        gt=0,
        description="Largest request body other than an upload (JSON): a larger one is a 413, "
        "refused from its Content-Length before it is read, or as soon as it passes this.",
    )
    max_upload_mb: float = env(
        "MAX_UPLOAD_MB",
        20.0,
        gt=0,
        description="Largest uploaded file; a whole upload request may carry ten times this.",
    )
    max_upload_files: int = env(
        "MAX_UPLOAD_FILES", 200, ge=1, description="Most files in one upload."
    )


class IngestSettings(SettingsGroup):
    """Ingest runs: parsing, watching, jobs on the queue, the golden-question gate."""

    parse_workers: int = env(
        "PARSE_WORKERS",
        1,
        ge=0,
        description="Processes parsing documents while embedding runs, each file under the "
        "parse budget (CITEWISE_PARSE_TIMEOUT_S, CITEWISE_PARSE_MEMORY_MB); 0: in the ingest "
        "process itself, with no budget (for debugging only).",
    )
    root: Path | None = env(
        "INGEST_ROOT",
        None,
        description="Folder under which POST /v1/kbs/{kb}/ingest may name server-side paths; "
        "unset: only uploads are accepted.",
    )
    workers: Literal["embedded", "external"] = env(
        "WORKERS",
        "embedded",
        description="Who runs ingest jobs: embedded (`citewise serve` runs a worker process "
        "of its own, restarted if it dies, stopped with the server) or external (`citewise "
        "worker` processes; uvicorn --factory never starts one). Nothing without Redis.",
    )
    answer_units: bool = env(
        "INGEST_ANSWER_UNITS",
        True,
        description="Embed the sentences, list items and code blocks of every new chunk into "
        "the embedding cache as the ingest stores it, so that offline (extractive) answers "
        "find them there instead of running the model while someone waits (ask miss p50 "
        "139 -> 23 ms at 10k chunks); about doubles the ingest's model time. Only with the "
        "extractive provider and a Redis.",
    )
    job_timeout_s: int = env(
        "JOB_TIMEOUT_S", 3600, ge=10, description="An ingest job running longer is stopped."
    )
    job_result_ttl_s: int = env(
        "JOB_RESULT_TTL_S",
        7 * 86400,
        ge=60,
        description="How long a finished job's state can be read.",
    )
    job_handovers: int = env(
        "JOB_HANDOVERS",
        1,
        ge=0,
        le=5,
        description="How many times an ingest job whose worker died (killed, its machine "
        "lost) is run again by another worker, from what the dead one stored; a job that "
        "fails by itself (a bad path, a failed gate) is never run again.",
    )
    worker_check_s: int = env(
        "WORKER_CHECK_S",
        60,
        ge=1,
        le=600,
        description="How often an idle `citewise worker` looks for jobs whose worker died, "
        "to run them again. A busy worker's heartbeat follows it too (every this, 5 to 30 s, "
        "each lasting twice this more, 15 to 60 s): a dead worker's job is noticed about 90 s "
        "after its last heartbeat at the default, 20 s at 1, plus up to this.",
    )
    shard_files: int = env(
        "INGEST_SHARD_FILES",
        200,
        ge=1,
        description="A queued ingest into a Chroma server is cut into shards of at most this "
        "many files (or CITEWISE_INGEST_SHARD_MB), which any `citewise worker` may take; a "
        "job within one shard runs on one worker, as without a server.",
    )
    shard_mb: float = env(
        "INGEST_SHARD_MB",
        64.0,
        gt=0,
        description="A shard closes once its files hold this many megabytes (a single larger "
        "file is a shard of its own).",
    )
    shard_lease_s: float = env(
        "INGEST_SHARD_LEASE_S",
        60.0,
        ge=1,
        description="A worker holding a shard renews its claim every third of this; a shard "
        "not renewed for this long (its worker died) is given to another worker.",
    )
    golden_dir: Path | None = env(
        "GOLDEN_DIR",
        None,
        description="Folder of golden questions, <kb>.jsonl; a knowledge base with a file "
        "there is ingested by jobs through a staging copy, promoted only if they pass. "
        "Unset: CITEWISE_HOME/golden.",
    )
    golden_k: int = env(
        "GOLDEN_K",
        5,
        ge=1,
        le=100,
        description="A golden question passes if its document is in this many top results.",
    )
    golden_min_hit_rate: float = env(
        "GOLDEN_MIN_HIT_RATE",
        0.8,
        ge=0.0,
        le=1.0,
        description="Share of golden questions that must pass for a gated ingest to be promoted.",
    )
    watch_debounce_ms: int = env(
        "WATCH_DEBOUNCE_MS",
        1500,
        ge=50,
        description="`citewise ingest --watch`: quiet time after the last change before "
        "re-ingesting.",
    )
    web_max_pages: int = env(
        "WEB_MAX_PAGES",
        1000,
        ge=1,
        description="Most pages one ingest of a web source fetches (`citewise ingest URL "
        "--max-pages` overrides it for one run).",
    )
    web_concurrency: int = env(
        "WEB_CONCURRENCY", 4, ge=1, le=64, description="Requests a web source has in flight."
    )
    web_delay_s: float = env(
        "WEB_DELAY_S",
        0.25,
        ge=0,
        description="Least time between the starts of two requests to one host; a robots.txt "
        "Crawl-delay that is longer wins.",
    )
    web_timeout_s: float = env(
        "WEB_TIMEOUT_S", 20.0, gt=0, description="One request of a web source may take this long."
    )
    web_retries: int = env(
        "WEB_RETRIES",
        2,
        ge=0,
        le=10,
        description="Retries of a request that timed out or was answered 429 or 5xx, after "
        "1, 2, 4... seconds (or the Retry-After the server gave, up to 30 s).",
    )
    web_misses: int = env(
        "WEB_MISSES",
        3,
        ge=1,
        description="Consecutive ingests a page of a web source must be missing from (404 or "
        "410, or gone from the sitemap or the links) before its document is removed.",
    )
    web_trust_lastmod: bool = env(
        "WEB_TRUST_LASTMOD",
        True,
        description="Take a page as unchanged, without a request, when the sitemap's lastmod "
        "for it is no later than at its last fetch.",
    )
    web_watch_interval_s: float = env(
        "WEB_WATCH_INTERVAL_S",
        900.0,
        ge=1,
        description="`citewise ingest URL --watch`: time between two re-checks of the site.",
    )
    web_allowed_prefixes: list[str] = env(
        "WEB_ALLOWED_PREFIXES",
        [],
        description="JSON list of URL prefixes (https://docs.example.com/) under which POST "
        "/v1/kbs/{kb}/ingest may name a web source; empty: the API ingests no web source.",
    )
    web_proxy: str | None = env(
        "WEB_PROXY",
        None,
        description="Proxy URL for web sources; the HTTP_PROXY-style variables are not read.",
    )

    @field_validator("web_allowed_prefixes")
    @classmethod
    def _web_prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            parts = urlsplit(prefix)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    "CITEWISE_WEB_ALLOWED_PREFIXES: each entry must be an http:// or https:// "
                    "URL with a host"
                )
        return prefixes


class ObservabilitySettings(SettingsGroup):
    """The service's log and its metrics (``citewise.logs``, ``citewise.metrics``)."""

    log_format: Literal["auto", "json", "text"] = env(
        "LOG_FORMAT",
        "auto",
        description="How `citewise serve` (and the app under uvicorn) writes its log: one JSON "
        "object per line, or plain text lines for a terminal; auto: text when stderr is a "
        "terminal, JSON otherwise (a pipe, a file, a container's log).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = env(
        "LOG_LEVEL",
        "INFO",
        description="Lowest level the service's own and uvicorn's loggers write; other "
        "libraries write warnings and above.",
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
