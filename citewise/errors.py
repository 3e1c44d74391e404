"""Every error Citewise raises on purpose.

    CitewiseError                  base; its message is safe to show a user
    ├── ConfigurationError         settings that cannot work (fails at start-up)
    ├── InvalidRequest             a caller asked for something malformed
    │   ├── InvalidKnowledgeBaseName
    │   └── UploadTooLarge         an uploaded file or request over its size limit
    ├── KnowledgeBaseNotFound      no collection for that knowledge base
    ├── ConversationNotFound       no live conversation with that id
    ├── Unauthorized               no API key, or an unknown one
    │   ├── WidgetTokenInvalid     a widget token that was not signed here or is malformed
    │   └── WidgetTokenExpired     a widget token past its lifetime (fetch a new one)
    ├── Forbidden                  a valid key that may not use the endpoint
    │   └── OriginNotAllowed       a widget used from a page origin it is not registered for
    ├── UnknownWidget              no help widget with that id
    ├── AnswerNotFound             feedback on an answer id that is unknown or too old
    ├── JobNotFound                no ingest job with that id (or it is too old)
    ├── QueueUnavailable           ingest jobs need Redis, which is off or unreachable
    ├── RateLimited                over a rate limit (carries retry_after)
    ├── RateLimiterUnavailable     limits cannot be checked and the policy is fail-closed
    ├── CacheUnavailable           an admin cache operation cannot reach Redis
    ├── KnowledgeBaseBusy          another ingest holds the knowledge base's lock
    ├── EmbeddingModelMismatch     the collection was built with another model
    ├── DocumentError              one document could not be read or parsed
    ├── QualityGateFailed          a gated ingest was not promoted: golden questions failed
    ├── StoreUnavailable           the vector store could not be reached
    └── GenerationFailed           the language model request failed
        └── GenerationTimeout      ... or did not answer in time

Messages never contain stack traces, secrets or absolute server paths: the HTTP layer
(`api/errors.py`) maps each class to a status code and shows the message as it is.
"""

from __future__ import annotations


class CitewiseError(Exception):
    """Base class: raised for any failure Citewise anticipates and can explain."""

    code = "citewise_error"


class ConfigurationError(CitewiseError):
    """Raised when settings are contradictory or point at something unusable."""

    code = "configuration_error"


class InvalidRequest(CitewiseError):
    """Raised when a caller's input is malformed (empty question, bad filter, ...)."""

    code = "invalid_request"


class InvalidKnowledgeBaseName(InvalidRequest):
    """Raised when a knowledge base name is not 1-48 of [a-z0-9_-], starting alphanumeric."""

    code = "invalid_kb_name"


class UploadTooLarge(InvalidRequest):
    """Raised when an uploaded file, or a whole upload, is over its size limit."""

    code = "upload_too_large"


class KnowledgeBaseNotFound(CitewiseError):
    """Raised when a knowledge base has never been ingested."""

    code = "kb_not_found"


class KnowledgeBaseBusy(CitewiseError):
    """Raised when another ingest of the same knowledge base is running."""

    code = "kb_busy"


class EmbeddingModelMismatch(CitewiseError):
    """Raised when a collection's recorded embedding model differs from the configured one."""

    code = "embedding_model_mismatch"


class DocumentError(CitewiseError):
    """Raised when one document cannot be read or parsed; the ingest reports it and goes on."""

    code = "document_error"


class StoreUnavailable(CitewiseError):
    """Raised when the vector store cannot be opened or reached."""

    code = "store_unavailable"


class GenerationFailed(CitewiseError):
    """Raised when the configured language model returns an error or cannot be reached."""

    code = "llm_unavailable"


class GenerationTimeout(GenerationFailed):
    """Raised when the language model does not answer within CITEWISE_LLM_TIMEOUT_S."""

    code = "llm_timeout"


class Unauthorized(CitewiseError):
    """Raised when a request needs an API key and carries none, or an unknown one."""

    code = "unauthorized"


class Forbidden(CitewiseError):
    """Raised when a valid API key is not allowed to use an endpoint (a query key on admin)."""

    code = "forbidden"


class RateLimited(CitewiseError):
    """Raised when a client or key is over its rate limit; ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiterUnavailable(CitewiseError):
    """Raised when rate limits cannot be checked (Redis down) and the policy is fail-closed."""

    code = "rate_limiter_unavailable"


class ConversationNotFound(CitewiseError):
    """Raised when a ``conversation_id`` names no live conversation (unknown or expired)."""

    code = "conversation_not_found"


class CacheUnavailable(CitewiseError):
    """Raised when an admin cache operation cannot reach Redis (or Redis is switched off)."""

    code = "cache_unavailable"


class WidgetTokenInvalid(Unauthorized):
    """Raised when a widget token is malformed or was not signed with this service's key."""

    code = "widget_token_invalid"


class WidgetTokenExpired(Unauthorized):
    """Raised when a widget token has outlived CITEWISE_WIDGET_TOKEN_TTL_S."""

    code = "widget_token_expired"


class OriginNotAllowed(Forbidden):
    """Raised when a widget (or its token) is used from a page origin it was not registered
    for, or without an Origin at all."""

    code = "origin_not_allowed"


class UnknownWidget(CitewiseError):
    """Raised when a widget id is not registered."""

    code = "unknown_widget"


class AnswerNotFound(CitewiseError):
    """Raised when feedback names an answer id that is unknown or older than
    CITEWISE_ANSWER_RECORD_TTL_S."""

    code = "answer_not_found"


class JobNotFound(CitewiseError):
    """Raised when an ingest job id is unknown or its record has expired."""

    code = "job_not_found"


class QueueUnavailable(CitewiseError):
    """Raised when ingest jobs cannot be queued or read: Redis is off or unreachable."""

    code = "queue_unavailable"


class QualityGateFailed(CitewiseError):
    """Raised when a gated ingest is not promoted because its golden questions no longer find
    their documents; the live knowledge base is left as it was."""

    code = "quality_gate_failed"
