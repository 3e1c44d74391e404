"""Settings in groups, read from the environment variables of the flat settings of old."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from citewise.settings import (
    FLAT,
    GROUPS,
    RateLimitSettings,
    RedisSettings,
    Settings,
    WidgetSpec,
    explain,
)

# The variables Citewise has always read: deployments set these, so they must not change.
VARIABLES = """
    HOME CACHE_DIR DEFAULT_KB ENV_FILE CHROMA_URL CHROMA_TOKEN CHROMA_TIMEOUT_S BM25_SYNC_S
    EMBEDDING_MODEL EMBEDDING_BATCH_SIZE EMBEDDING_THREADS EMBEDDING_MAX_TOKENS EMBEDDING_DEVICE
    TOKENIZER_ENCODING CHUNK_TOKENS CHUNK_OVERLAP MAX_FILE_MB MAX_UNCOMPRESSED_MB
    MAX_COMPRESSION_RATIO MAX_NESTING_DEPTH PARSE_WORKERS PARSE_TIMEOUT_S PARSE_MEMORY_MB
    RETRIEVAL_MODE RETRIEVAL_CANDIDATES
    FUSION RRF_K BM25_K1 BM25_B DENSE_WEIGHT BM25_WEIGHT DEDUP_SIMILARITY PASSAGE_CACHE_SIZE
    ANSWER_PROVIDER ANSWER_K MIN_RELEVANCE MAX_QUESTION_CHARS MAX_HISTORY_TURNS KB_BASE_URLS
    LLM_BASE_URL LLM_API_KEY LLM_MODEL LLM_TEMPERATURE LLM_TIMEOUT_S LLM_MAX_RETRIES LLM_MAX_TOKENS
    FAKE_REPLIES SSE_PING_S REDIS_URL REDIS_PREFIX REDIS_MAX_CONNECTIONS REDIS_TIMEOUT_S
    REDIS_RETRY_S EMBEDDING_CACHE EMBEDDING_CACHE_TTL_S ANSWER_CACHE ANSWER_CACHE_TTL_S
    ANSWER_WAIT_S CONVERSATION_TTL_S ADMIN_KEYS QUERY_KEYS RATE_LIMIT_SEARCH_PER_IP
    RATE_LIMIT_SEARCH_PER_KEY RATE_LIMIT_ASK_PER_IP RATE_LIMIT_ASK_PER_KEY
    RATE_LIMIT_ADMIN_PER_IP RATE_LIMIT_ADMIN_PER_KEY RATE_LIMIT_SEARCH_PER_WIDGET
    RATE_LIMIT_ASK_PER_WIDGET RATE_LIMIT_WIDGET_PER_IP RATE_LIMIT_WIDGET_PER_WIDGET
    RATE_LIMIT_STRATEGY RATE_LIMIT_FAIL_OPEN INGEST_ROOT MAX_UPLOAD_MB MAX_UPLOAD_FILES
    WORKERS INGEST_ANSWER_UNITS JOB_TIMEOUT_S JOB_RESULT_TTL_S JOB_HANDOVERS WORKER_CHECK_S
    INGEST_SHARD_FILES INGEST_SHARD_MB INGEST_SHARD_LEASE_S GOLDEN_DIR GOLDEN_K
    GOLDEN_MIN_HIT_RATE WATCH_DEBOUNCE_MS
    WIDGETS WIDGET_SECRET WIDGET_TOKEN_TTL_S ANSWER_RECORD_TTL_S OUTCOME_LOG_MAX LOG_FORMAT
    LOG_LEVEL METRICS_KEY TRUSTED_PROXIES MAX_BODY_MB ALLOWED_HOSTS JWT_SECRET JWT_JWKS
    JWT_ALGORITHMS JWT_AUDIENCE JWT_ISSUER JWT_LEEWAY_S JWT_KB_CLAIM JWT_CLAIM_KBS
    JWT_JWKS_REFRESH_S CHAT_FOOTNOTES WEB_MAX_PAGES WEB_CONCURRENCY WEB_DELAY_S WEB_TIMEOUT_S
    WEB_RETRIES WEB_MISSES WEB_TRUST_LASTMOD WEB_WATCH_INTERVAL_S WEB_ALLOWED_PREFIXES WEB_PROXY
""".split()  # noqa: SIM905 - a list of 120 names, one a line, reads worse

KEY = "k" * 20
SECRET = "s" * 40
# flat name -> (what the variable is set to, what the group field then holds)
CASES: dict[str, tuple[str, Any]] = {
    "home": ("/srv/citewise", Path("/srv/citewise")),
    "default_kb": ("handbook", "handbook"),
    "chroma_url": ("http://chroma:8000/", "http://chroma:8000"),
    "chroma_token": ("chroma-token", SecretStr("chroma-token")),
    "bm25_sync_s": ("0", 0.0),
    "embedding_batch_size": ("8", 8),
    "embedding_threads": ("2", 2),
    "tokenizer_encoding": ("o200k_base", "o200k_base"),
    "chunk_tokens": ("300", 300),
    "chunk_overlap": ("10", 10),
    "retrieval_mode": ("bm25", "bm25"),
    "fusion": ("rrf", "rrf"),
    "bm25_k1": ("1.2", 1.2),
    "passage_cache_size": ("0", 0),
    "max_file_mb": ("5", 5.0),
    "max_nesting_depth": ("64", 64),
    "max_upload_files": ("3", 3),
    "max_body_mb": ("2", 2.0),
    "parse_workers": ("0", 0),
    "ingest_root": ("/srv/docs", Path("/srv/docs")),
    "golden_k": ("7", 7),
    "job_timeout_s": ("60", 60),
    "answer_provider": ("fake", "fake"),
    "answer_k": ("3", 3),
    "kb_base_urls": (
        '{"default": "https://help.example.com/"}',
        {"default": "https://help.example.com/"},
    ),
    "sse_ping_s": ("2.5", 2.5),
    "llm_base_url": ("http://llm:8080/v1", "http://llm:8080/v1"),
    "llm_api_key": ("sk-test", SecretStr("sk-test")),
    "llm_model": ("tiny", "tiny"),
    "fake_replies": ('["one [1]", "two [1]"]', ["one [1]", "two [1]"]),
    "redis_url": ("redis://redis:6379/1", "redis://redis:6379/1"),
    "redis_prefix": ("tenant-a", "tenant-a"),
    "embedding_cache": ("false", False),
    "answer_cache_ttl_s": ("60", 60),
    "conversation_ttl_s": ("120", 120),
    "answer_record_ttl_s": ("600", 600),
    "outcome_log_max": ("1000", 1000),
    "admin_keys": (f"{KEY}1, {KEY}2", [SecretStr(f"{KEY}1"), SecretStr(f"{KEY}2")]),
    "query_keys": (f'["{KEY}3"]', [SecretStr(f"{KEY}3")]),
    "metrics_key": (KEY, SecretStr(KEY)),
    "trusted_proxies": ("10.0.0.5, 10.1.0.0/16", ["10.0.0.5/32", "10.1.0.0/16"]),
    "allowed_hosts": (
        "Help.Example.com, *.example.org, ::1",
        ["help.example.com", "*.example.org", "[::1]"],
    ),
    "rate_limit_ask_per_ip": ("none", "none"),
    "rate_limit_widget_per_widget": ("5/second", "5/second"),
    "rate_limit_strategy": ("moving-window", "moving-window"),
    "rate_limit_fail_open": ("false", False),
    "widgets": ('{"help": {"origins": ["https://example.com"]}}', {"help": "https://example.com"}),
    "widget_secret": (SECRET, SecretStr(SECRET)),
    "widget_token_ttl_s": ("60", 60),
    "log_format": ("text", "text"),
    "log_level": ("debug", "DEBUG"),
    "prometheus_multiproc_dir": ("/tmp/prometheus", Path("/tmp/prometheus")),
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for place in FLAT.values():
        monkeypatch.delenv(place.variable, raising=False)
    monkeypatch.setenv("CITEWISE_ENV_FILE", "off")  # tests/test_settings_env.py reads files


def held(settings: Settings, name: str) -> Any:
    place = FLAT[name]
    value = getattr(getattr(settings, place.group), place.field)
    if name == "widgets":
        return {key: spec.origins[0] for key, spec in value.items()}
    return value


def comparable(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return ("secret", value.get_secret_value())
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_the_variables_are_those_of_the_flat_settings() -> None:
    expected = {f"CITEWISE_{name}" for name in VARIABLES} | {"PROMETHEUS_MULTIPROC_DIR"}
    assert {place.variable for place in FLAT.values()} == expected
    for name, place in FLAT.items():
        assert place.variable in (f"CITEWISE_{name.upper()}", name.upper())
        assert place.field in GROUPS[place.group].model_fields


def test_the_cases_cover_every_group() -> None:
    assert {FLAT[name].group for name in CASES} == set(GROUPS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_field_is_read_from_its_old_variable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, expected = CASES[name]
    monkeypatch.setenv(FLAT[name].variable, raw)
    assert comparable(held(Settings(), name)) == comparable(expected)


def test_all_the_cases_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (raw, _) in CASES.items():
        monkeypatch.setenv(FLAT[name].variable, raw)
    settings = Settings()
    for name, (_, expected) in CASES.items():
        assert comparable(held(settings, name)) == comparable(expected), name


@pytest.mark.parametrize("name", sorted(FLAT))
def test_every_field_reads_its_variable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value from the variable either lands in the field or is refused naming the variable."""
    place = FLAT[name]
    default = getattr(GROUPS[place.group](), place.field)
    monkeypatch.setenv(place.variable, "cw-sample-0123456789abcdef0123456789abcdef")
    try:
        value = getattr(GROUPS[place.group](), place.field)
    except ValidationError as error:
        assert [e["loc"] for e in error.errors()] == [(place.variable,)]
    except SettingsError as error:  # CITEWISE_ENV_FILE naming no file
        assert str(error).startswith(f"{place.variable}: ")
    else:
        assert value != default


def test_a_short_field_name_is_not_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for short in ("URL", "TOKEN", "MODEL", "PREFIX", "K", "MODE", "SECRET", "ROOT", "PROVIDER"):
        monkeypatch.setenv(f"CITEWISE_{short}", "not-a-setting")
    settings = Settings()
    assert settings.redis.url is None and settings.chroma.url is None
    assert settings.retrieval.mode == "hybrid" and settings.answering.provider == "extractive"


def test_an_unknown_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEWISE_NO_SUCH_SETTING", "whatever")
    monkeypatch.setenv("CITEWISE_REDIS", '{"url": "redis://elsewhere"}')  # a group's name
    settings = Settings()
    assert settings.redis.url is None


def test_flat_keywords_go_to_their_groups_and_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CITEWISE_LLM_MODEL", "from-env")
    monkeypatch.setenv("CITEWISE_REDIS_PREFIX", "from-env")
    settings = Settings(
        home=tmp_path, redis_url="off", rate_limit_ask_per_ip="none", redis_prefix="kw"
    )
    assert settings.core.home == tmp_path and settings.lock_dir == tmp_path / "locks"
    assert settings.redis.url == "off" and not settings.redis.enabled
    assert settings.rate_limits.ask_per_ip == "none"
    assert settings.redis.prefix == "kw" and settings.llm.model == "from-env"


def test_unknown_flat_keywords_are_ignored_as_before() -> None:
    assert Settings(no_such_setting=1).model_dump() == Settings().model_dump()


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="CITEWISE_CHUNK_TOKENS"):
        Settings(chunk_tokens=5)
    with pytest.raises(ValidationError, match="CITEWISE_CHUNK_OVERLAP must be smaller"):
        Settings(chunk_overlap=200)
    monkeypatch.setenv("CITEWISE_WIDGET_SECRET", "too-short")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "CITEWISE_WIDGET_SECRET" in str(error.value) and "too-short" not in str(error.value)
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES: entry 2 is not an IP") as error:
        Settings(trusted_proxies="10.0.0.1, sk-pasted-here")
    assert "sk-pasted-here" not in str(error.value)


EXPLAINED = {
    "CHUNK_TOKENS=abc": "CITEWISE_CHUNK_TOKENS: expected an integer, at least 16 and at most 4096",
    "CHUNK_TOKENS=8": "CITEWISE_CHUNK_TOKENS: must be at least 16 and at most 4096",
    "LLM_TIMEOUT_S=soon": "CITEWISE_LLM_TIMEOUT_S: expected a number, more than 0",
    "RETRIEVAL_MODE=fast": "CITEWISE_RETRIEVAL_MODE: expected 'dense', 'bm25' or 'hybrid'",
    "EMBEDDING_CACHE=maybe": "CITEWISE_EMBEDDING_CACHE: expected true or false",
    "CHROMA_URL=chroma:8000": "CITEWISE_CHROMA_URL must look like http://host:port",
    "REDIS_PREFIX=a b": "CITEWISE_REDIS_PREFIX: must match ^[A-Za-z0-9_.-]{1,64}$",
    "FAKE_REPLIES=one, two": "CITEWISE_FAKE_REPLIES: expected JSON (Expecting value, character 1)",
    'FAKE_REPLIES={"a": 1}': "CITEWISE_FAKE_REPLIES: expected a JSON list",
    'WIDGETS={"help": {}}': "CITEWISE_WIDGETS: help.origins: required",
    "CHUNK_OVERLAP=500": "CITEWISE_CHUNK_OVERLAP must be smaller than CITEWISE_CHUNK_TOKENS",
    "ADMIN_KEYS=sk-short": "CITEWISE_ADMIN_KEYS: API keys must be at least 16 characters long",
}


@pytest.mark.parametrize("assignment", sorted(EXPLAINED))
def test_a_refused_value_is_explained_in_one_line_by_its_variable(
    assignment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _, value = assignment.partition("=")
    monkeypatch.setenv(f"CITEWISE_{name}", value)
    with pytest.raises(ValidationError) as error:
        Settings()
    assert explain(error.value) == [EXPLAINED[assignment]]
    assert value not in EXPLAINED[assignment].removeprefix(f"CITEWISE_{name}")


def test_every_mistake_of_a_group_is_a_line_and_other_errors_are_not_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CITEWISE_RRF_K", "many")
    monkeypatch.setenv("CITEWISE_BM25_B", "3")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert explain(error.value) == [
        "CITEWISE_RRF_K: expected an integer, at least 1",
        "CITEWISE_BM25_B: must be at least 0 and at most 1",
    ]
    with pytest.raises(ValidationError) as other:
        WidgetSpec.model_validate({})
    assert explain(other.value) is None


def test_groups_take_short_names_or_variables() -> None:
    assert RedisSettings(url="redis://a").url == "redis://a"
    assert RedisSettings(CITEWISE_REDIS_URL="redis://b").url == "redis://b"
    with pytest.raises(TypeError, match="redis_url"):
        RedisSettings(redis_url="redis://c")


def test_replace_and_round_trips(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, widgets={"a": {"origins": ["https://a.example"]}})
    changed = settings.replace(redis_url="off", max_history_turns=0)
    assert changed.redis.url == "off" and changed.answering.max_history_turns == 0
    assert settings.redis.url is None and settings.answering.max_history_turns == 20
    assert changed.core is settings.core  # untouched groups are shared, as model_copy did
    with pytest.raises(TypeError, match="no_such_setting"):
        settings.replace(no_such_setting=1)
    again = Settings.model_validate(settings.model_dump())
    assert again.model_dump() == settings.model_dump()
    mixed = Settings.model_validate(settings.model_dump() | {"default_kb": "other"})
    assert mixed.core.default_kb == "other" and mixed.core.home == tmp_path


def test_rate_limits_are_a_table_of_family_and_scope() -> None:
    limits = RateLimitSettings(ask_per_ip="none", widget_per_widget="5/second")
    rates = limits.rates()
    assert rates[("ask", "ip")] == "none" and rates[("widget", "widget")] == "5/second"
    fields = {p.field for p in FLAT.values() if p.group == "rate_limits"}
    assert len(rates) == len(fields - {"strategy", "fail_open"})
    for (family, scope), limit in rates.items():
        place = FLAT[RateLimitSettings.variable(family, scope).removeprefix("CITEWISE_").lower()]
        assert getattr(limits, place.field) == limit
