"""Every error Citewise raises on purpose, in families that each map to one HTTP status.

    CitewiseError                  base; its message is safe to show a user
    ├── InvalidRequest             400 a caller asked for something malformed
    │   ├── InvalidKnowledgeBaseName
    │   ├── TooLarge               413 a body, upload or file over its size limit
    │   │   └── UploadTooLarge
    │   └── UnsupportedMediaType   415 a body in a format the endpoint does not take
    ├── Unauthorized               401 no API key, or an unknown one
    │   ├── WidgetTokenInvalid     a widget token that was not signed here or is malformed
    │   └── WidgetTokenExpired     a widget token past its lifetime (fetch a new one)
    ├── Forbidden                  403 a valid credential that may not do this
    │   ├── HostNotAllowed         a Host header naming no host the service answers to
    │   └── OriginNotAllowed       a page origin that may not call this: another site's page,
    │                              or a widget's page it is not registered for
    ├── NotFound                   404 the thing named does not exist (or has expired)
    │   ├── KnowledgeBaseNotFound, ConversationNotFound, UnknownWidget, AnswerNotFound,
    │   └── JobNotFound, DocumentNotFound
    ├── Conflict                   409 the request clashes with the current state
    │   ├── KnowledgeBaseBusy      another ingest or delete holds the knowledge base
    │   ├── EmbeddingModelMismatch the collection was built with another model
    │   └── QualityGateFailed      a gated ingest was not promoted: golden questions failed
    ├── RateLimited                429 over a rate limit (carries retry_after)
    ├── Unavailable                503 a service Citewise depends on cannot be used now
    │   ├── StoreUnavailable, QueueUnavailable, CacheUnavailable, ShardAbandoned,
    │   └── RateLimiterUnavailable limits cannot be checked and the policy is fail-closed
    ├── UpstreamFailed             502 the language model failed
    │   └── UpstreamTimeout        504 ... or did not answer in time
    │       (GenerationFailed and GenerationTimeout are their names for the model)
    ├── DocumentError              422 one document could not be read or parsed
    │   └── EmptyDocument          ... or holds no text (reported as skipped)
    └── ConfigurationError         500 settings that cannot work (fails at start-up)

A new error joins a family and needs no new row in the HTTP map (``api/errors.py``). Messages
never contain stack traces, secrets or absolute server paths: the HTTP layer shows them as
they are.
"""

from __future__ import annotations


class CitewiseError(Exception):
    """Base class: raised for any failure Citewise anticipates and can explain."""

    code = "citewise_error"


# --- the families -------------------------------------------------------------------------


class NotFound(CitewiseError):
    """Raised when the thing a request names does not exist or has expired."""

    code = "not_found"


class Conflict(CitewiseError):
    """Raised when a request clashes with the current state of what it acts on."""

    code = "conflict"


class Unavailable(CitewiseError):
    """Raised when a service Citewise depends on (store, Redis, queue) cannot be used now."""

    code = "unavailable"


class UpstreamFailed(CitewiseError):
    """Raised when an upstream service that writes answers (the language model) fails."""

    code = "upstream_failed"


class UpstreamTimeout(UpstreamFailed):
    """Raised when that upstream service does not answer in time."""

    code = "upstream_timeout"


# --- the members ---------------------------------------------------------------------------


class ConfigurationError(CitewiseError):
    """Raised when settings are contradictory or point at something unusable."""

    code = "configuration_error"


class InvalidRequest(CitewiseError):
    """Raised when a caller's input is malformed (empty question, bad filter, ...)."""

    code = "invalid_request"


class InvalidKnowledgeBaseName(InvalidRequest):
    """Raised when a knowledge base name is not 1-48 of [a-z0-9_-], starting alphanumeric."""

    code = "invalid_kb_name"


class TooLarge(InvalidRequest):
    """Raised when a request body, an upload or a file is over its size limit."""

    code = "too_large"


class UploadTooLarge(TooLarge):
    """Raised when an uploaded file, or a whole upload, is over its size limit."""

    code = "upload_too_large"


class UnsupportedMediaType(InvalidRequest):
    """Raised when a request that changes something sends a body in a format its endpoint
    does not take (only JSON, and multipart uploads where files are taken)."""

    code = "unsupported_media_type"


class KnowledgeBaseNotFound(NotFound):
    """Raised when a knowledge base has never been ingested."""

    code = "kb_not_found"


class KnowledgeBaseBusy(Conflict):
    """Raised when another ingest or a delete of the same knowledge base is running."""

    code = "kb_busy"


class EmbeddingModelMismatch(Conflict):
    """Raised when a collection's recorded embedding model differs from the configured one."""

    code = "embedding_model_mismatch"


class DocumentError(CitewiseError):
    """Raised when one document cannot be read or parsed; the ingest reports it and goes on."""

    code = "document_error"


class EmptyDocument(DocumentError):
    """Raised when a document holds no text to index (only a title, an image, a scan); the
    ingest reports it as skipped, with this reason."""

    code = "empty_document"


class StoreUnavailable(Unavailable):
    """Raised when the vector store cannot be opened or reached."""

    code = "store_unavailable"


class GenerationFailed(UpstreamFailed):
    """Raised when the configured language model returns an error or cannot be reached."""

    code = "llm_unavailable"


class GenerationTimeout(GenerationFailed, UpstreamTimeout):
    """Raised when the language model does not answer within CITEWISE_LLM_TIMEOUT_S."""

    code = "llm_timeout"


class Unauthorized(CitewiseError):
    """Raised when a request needs an API key and carries none, or an unknown one."""

    code = "unauthorized"


class Forbidden(CitewiseError):
    """Raised when a valid API key is not allowed to use an endpoint (a query key on admin)."""

    code = "forbidden"


class HostNotAllowed(Forbidden):
    """Raised when the Host header names no host in CITEWISE_ALLOWED_HOSTS (a name made to
    point at this machine by another site, as in DNS rebinding)."""

    code = "host_not_allowed"


class RateLimited(CitewiseError):
    """Raised when a client or key is over its rate limit; ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiterUnavailable(Unavailable):
    """Raised when rate limits cannot be checked (Redis down) and the policy is fail-closed."""

    code = "rate_limiter_unavailable"


class ConversationNotFound(NotFound):
    """Raised when a ``conversation_id`` names no live conversation (unknown or expired)."""

    code = "conversation_not_found"


class CacheUnavailable(Unavailable):
    """Raised when an admin cache operation cannot reach Redis (or Redis is switched off)."""

    code = "cache_unavailable"


class WidgetTokenInvalid(Unauthorized):
    """Raised when a widget token is malformed or was not signed with this service's key."""

    code = "widget_token_invalid"


class WidgetTokenExpired(Unauthorized):
    """Raised when a widget token has outlived CITEWISE_WIDGET_TOKEN_TTL_S."""

    code = "widget_token_expired"


class OriginNotAllowed(Forbidden):
    """Raised when a browser page on another site sends a request that changes something
    (a cross-site request), or when a widget (or its token) is used from a page origin it was
    not registered for, or without an Origin at all."""

    code = "origin_not_allowed"


class UnknownWidget(NotFound):
    """Raised when a widget id is not registered."""

    code = "unknown_widget"


class AnswerNotFound(NotFound):
    """Raised when feedback names an answer id that is unknown or older than
    CITEWISE_ANSWER_RECORD_TTL_S."""

    code = "answer_not_found"


class JobNotFound(NotFound):
    """Raised when an ingest job id is unknown or its record has expired."""

    code = "job_not_found"


class DocumentNotFound(NotFound):
    """Raised when a document id (or path) names no document of the knowledge base."""

    code = "document_not_found"


class QueueUnavailable(Unavailable):
    """Raised when ingest jobs cannot be queued or read: Redis is off or unreachable."""

    code = "queue_unavailable"


class QualityGateFailed(Conflict):
    """Raised when a gated ingest is not promoted because its golden questions no longer find
    their documents; the live knowledge base is left as it was."""

    code = "quality_gate_failed"


class ShardAbandoned(Unavailable):
    """Raised when the workers given one shard of a sharded ingest all died before finishing
    it (as the job's error): the job stops, and the next ingest redoes what it left."""

    code = "shard_abandoned"
