"""One typed settings object, read once from the environment, in groups by component.

``Settings`` holds one group per component, each a pydantic-settings class of its own
(``citewise.settings_groups``, ``citewise.settings_serving``):

=================  ===========================================================================
``core``           home, cache_dir, default_kb, env_file
``chroma``         url, token, timeout_s, bm25_sync_s (a Chroma server, when there is one)
``embedding``      model, batch_size, threads, max_tokens, device
``chunking``       encoding, tokens, overlap
``retrieval``      mode, candidates, fusion, rrf_k, bm25_k1, bm25_b, dense_weight, bm25_weight,
                   dedup_similarity, passage_cache_size
``limits``         max_file_mb, max_uncompressed_mb, max_compression_ratio, max_nesting_depth,
                   max_body_mb, max_upload_mb, max_upload_files (what a request body, an
                   upload or a document may be)
``ingest``         parse_workers, root, job_timeout_s, job_result_ttl_s, shard_files,
                   shard_mb, shard_lease_s, golden_dir, golden_k, golden_min_hit_rate,
                   watch_debounce_ms, web_* (web sources)
``answering``      provider, k, min_relevance, max_question_chars, max_history_turns,
                   kb_base_urls, sse_ping_s
``llm``            base_url, api_key, model, temperature, timeout_s, max_retries, max_tokens,
                   fake_replies
``redis``          url, prefix, max_connections, timeout_s, retry_s, embedding_cache,
                   embedding_cache_ttl_s, answer_cache, answer_cache_ttl_s, answer_wait_s,
                   conversation_ttl_s
``outcomes``       answer_record_ttl_s, log_max (kept for ``citewise report``)
``access``         admin_keys, query_keys, metrics_key, trusted_proxies, allowed_hosts
``rate_limits``    <family>_per_<scope> (search, ask, admin, widget x ip, key, widget),
                   strategy, fail_open
``widget``         registered, secret, token_ttl_s
``observability``  log_format, log_level, prometheus_multiproc_dir
=================  ===========================================================================

The environment variables are the flat names of old: ``retrieval.bm25_k1`` is read from
``CITEWISE_BM25_K1``, ``redis.url`` from ``CITEWISE_REDIS_URL``, ``access.admin_keys`` from
``CITEWISE_ADMIN_KEYS`` (``FLAT`` lists them all). ``Settings(home=..., redis_url=...)`` takes
the same flat names as keywords and hands each to its group; anything the keywords leave out
comes from the environment, then from a ``.env`` file (``citewise.settings_env``), and unknown
keywords are ignored, as they always were. ``explain`` turns a refusal into one line per mistake,
by variable, for the CLI and the app factory to print.

Build ``Settings`` once per process (a CLI command, the app factory, a worker's job) and hand
each component the group or groups it reads. Paths derived from ``core.home`` are properties here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, cast

import annotated_types as at
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from citewise.settings_groups import (
    ChromaSettings,
    ChunkingSettings,
    CoreSettings,
    EmbeddingSettings,
    IngestSettings,
    LimitSettings,
    ObservabilitySettings,
    RetrievalSettings,
    SettingsGroup,
)
from citewise.settings_serving import (
    REDIS_OFF,
    AccessSettings,
    AnsweringSettings,
    LLMSettings,
    OutcomeSettings,
    RateFamily,
    RateLimitSettings,
    RateScope,
    RedisSettings,
    WidgetSettings,
    WidgetSpec,
)

__all__ = [
    "FLAT",
    "GROUPS",
    "REDIS_OFF",
    "AccessSettings",
    "AnsweringSettings",
    "ChromaSettings",
    "ChunkingSettings",
    "CoreSettings",
    "EmbeddingSettings",
    "FlatName",
    "IngestSettings",
    "LLMSettings",
    "LimitSettings",
    "ObservabilitySettings",
    "OutcomeSettings",
    "RateFamily",
    "RateLimitSettings",
    "RateScope",
    "RedisSettings",
    "RetrievalSettings",
    "Settings",
    "SettingsGroup",
    "WidgetSettings",
    "WidgetSpec",
    "explain",
]


class Settings(BaseModel):
    """Every knob Citewise has, by component. Build it once (CLI or app factory) and pass each
    component its group."""

    model_config = ConfigDict(hide_input_in_errors=True)

    core: CoreSettings
    chroma: ChromaSettings
    embedding: EmbeddingSettings
    chunking: ChunkingSettings
    retrieval: RetrievalSettings
    limits: LimitSettings
    ingest: IngestSettings
    answering: AnsweringSettings
    llm: LLMSettings
    redis: RedisSettings
    outcomes: OutcomeSettings
    access: AccessSettings
    rate_limits: RateLimitSettings
    widget: WidgetSettings
    observability: ObservabilitySettings

    def __init__(self, **values: Any) -> None:
        # Groups are built here rather than in the validator below, so that their errors
        # (a ValidationError by variable, or an EnvFileError for the .env file) reach the
        # caller as they are instead of wrapped in a ValidationError of Settings.
        super().__init__(**_grouped(values))

    @model_validator(mode="before")
    @classmethod
    def _from_flat_names(cls, data: Any) -> Any:
        """``model_validate`` takes what the constructor takes, ``model_dump()`` output too."""
        return _grouped(data) if isinstance(data, Mapping) else data

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, by flat name (``replace(redis_url="off")``);
        like ``model_copy(update=...)``, the new values are not validated."""
        updates: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            place = FLAT.get(name.lower())
            if place is None:
                raise TypeError(f"no setting {name!r}")
            updates.setdefault(place.group, {})[place.field] = value
        copies = {name: getattr(self, name).model_copy(update=u) for name, u in updates.items()}
        return self.model_copy(update=copies)

    @property
    def chroma_path(self) -> Path:
        return self.core.home / "chroma"

    @property
    def manifest_path(self) -> Path:
        return self.core.home / "manifest.sqlite3"

    @property
    def lexical_path(self) -> Path:
        return self.core.home / "bm25"

    @property
    def lock_dir(self) -> Path:
        return self.core.home / "locks"

    @property
    def uploads_path(self) -> Path:
        return self.core.home / "uploads"

    @property
    def widget_secret_path(self) -> Path:
        return self.core.home / "widget-secret"

    @property
    def redis_path(self) -> Path:
        return self.core.home / "redis"

    @property
    def golden_folder(self) -> Path:
        """Where golden questions are looked for: ``ingest.golden_dir`` or ``home/golden``."""
        return self.ingest.golden_dir or self.core.home / "golden"


class FlatName(NamedTuple):
    """Where a flat setting lives: ``Settings.<group>.<field>``, read from ``variable``."""

    group: str
    field: str
    variable: str


GROUPS: dict[str, type[SettingsGroup]] = {
    name: cast(type[SettingsGroup], info.annotation) for name, info in Settings.model_fields.items()
}
FLAT: dict[str, FlatName] = {
    variable.removeprefix("CITEWISE_").lower(): FlatName(group, field, variable)
    for group, kind in GROUPS.items()
    for field, variable in kind.variables().items()
}
"""Every setting by its flat name (``redis_url``, ``rate_limit_ask_per_ip``...)."""
# Each keyword must mean one thing: a group's name is no flat name, a variable one field.
assert not FLAT.keys() & GROUPS.keys()
assert len({place.variable for place in FLAT.values()}) == len(FLAT)
_BY_VARIABLE = {place.variable.lower(): place for place in FLAT.values()}


def _grouped(values: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor or ``model_validate`` input -> one built group per group name.

    Takes groups (instances, or mappings of their fields such as ``model_dump()`` gives) and
    flat names (``redis_url``, or the variable ``CITEWISE_REDIS_URL``, in any case); flat names
    win over a group given as a whole. Other keys are ignored, as flat settings ignored them.
    """
    given: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    built: dict[str, SettingsGroup] = {}
    flat: list[tuple[FlatName, Any]] = []
    for key, value in values.items():
        if key in GROUPS:
            if isinstance(value, GROUPS[key]) and isinstance(value, SettingsGroup):
                built[key] = value
            else:
                given[key] = dict(value)
        elif (place := FLAT.get(key.lower()) or _BY_VARIABLE.get(key.lower())) is not None:
            flat.append((place, value))
    for place, value in flat:
        given[place.group][place.variable] = value
    grouped: dict[str, SettingsGroup] = {}
    for name, kind in GROUPS.items():
        if not given[name] and name in built:
            grouped[name] = built[name]
            continue
        whole = dict(built[name]) if name in built else {}
        grouped[name] = kind(**(_by_variable(kind, whole) | _by_variable(kind, given[name])))
    return grouped


def _by_variable(kind: type[SettingsGroup], values: Mapping[str, Any]) -> dict[str, Any]:
    variables = kind.variables()
    return {variables.get(name, name): value for name, value in values.items()}


def explain(error: ValidationError | SettingsError) -> list[str] | None:
    """What was wrong with the settings, one line per mistake, each naming its variable and
    what it allows (``CITEWISE_CHUNK_TOKENS: expected an integer, at least 16 and at most
    4096``) but never the value given, which may be a key pasted into the wrong variable.

    None when ``error`` is not about settings (a ValidationError of some other model)."""
    if isinstance(error, SettingsError):  # the .env file; it names itself
        return [str(error)]
    kind = _BY_CLASS.get(error.title)
    if kind is None:
        return None
    return [_explained(kind, detail) for detail in error.errors()]


_BY_CLASS = {kind.__name__: kind for kind in GROUPS.values()}
_NUMBERS = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
}
_BOUNDS = {at.Ge: "at least", at.Gt: "more than", at.Le: "at most", at.Lt: "less than"}
_SHAPES = {
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "dict_type": "expected a JSON object",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "list_type": "expected a JSON list",
    "missing": "required",
}


def _explained(kind: type[SettingsGroup], detail: ErrorDetails) -> str:
    location = [str(part) for part in detail["loc"]]
    field = _field(kind, location[0]) if location else None
    said = _said(detail, field)
    if not location or said.startswith(location[0]):  # a check that names its variables
        return said
    return ": ".join([location[0], *([".".join(location[1:])] if location[1:] else []), said])


def _field(kind: type[SettingsGroup], variable: str) -> FieldInfo | None:
    names = {v: name for name, v in kind.variables().items()}
    return kind.model_fields.get(names.get(variable, ""))


def _said(detail: ErrorDetails, field: FieldInfo | None) -> str:
    ctx, kind = detail.get("ctx") or {}, detail["type"]
    bounds = _bounds(field) if field is not None else ""
    if kind == "value_error":  # our validators' own words
        return str(ctx.get("error", detail["msg"]))
    if kind in _NUMBERS:
        return f"expected {_NUMBERS[kind]}" + (f", {bounds}" if bounds else "")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"must be {bounds or detail['msg'].removeprefix('Input should be ')}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    return _SHAPES.get(kind, detail["msg"])


def _bounds(field: FieldInfo) -> str:
    """``at least 16 and at most 4096``, from the field's constraints."""
    found = [
        f"{_BOUNDS[type(m)]} {_number(getattr(m, type(m).__name__.lower()))}"
        for m in field.metadata
        if type(m) in _BOUNDS
    ]
    return " and ".join(found)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
