"""The service's log: one JSON object per line, or plain text on a terminal, each line of a
request carrying that request's id.

``request_id`` is set by the HTTP layer for the duration of a request (``api/observability.py``)
and read here when a line is formatted, so every logger, ours or a library's, gets it without
being passed anything. The CLI commands never call ``configure_logging``: their terminal output
stays as it is.

Why the standard library and not python-json-logger: the formatter below is a screenful, we
want exact control over the field names and over what is left out (uvicorn's ANSI-coloured copy
of each message), and one dependency fewer is one less thing to audit in the code that sees
every log line.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

request_id: ContextVar[str | None] = ContextVar("citewise_request_id", default=None)

HANDLER_NAME = "citewise"

# Attributes every LogRecord has; anything else on a record was passed with ``extra=``.
# ``color_message`` is uvicorn's copy of the message with terminal colour codes.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a line stays valid whatever encoding the collector assumes, and every
        # newline inside a message or traceback is escaped, so one record is one line.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request_id=...]``, for reading in a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        current = request_id.get()
        return line if current is None else f"{line} [request_id={current}]"


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each line, as logging's own
    last-resort handler does: a handler holding the stream it was created with would write
    to a closed one once something (a test runner, a daemoniser) replaced it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(log_format: Literal["auto", "json", "text"], level: str) -> None:
    """Send this process's log lines to stderr in ``log_format``: ours, uvicorn's, the rest.
    ``auto`` is text when stderr is a terminal now, JSON otherwise.

    Safe to call again (each app built in one process calls it): our handler is replaced, and
    handlers others installed on the root logger (pytest's, say) are left alone.
    """
    text = log_format == "text" or (log_format == "auto" and _is_terminal(sys.stderr))
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelNamesMapping()[level]
    # Other libraries' INFO lines (each HTTP call httpx makes, Chroma's notices) are noise in
    # a service log: they write warnings and up, unless an even higher level is asked for.
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("citewise").setLevel(numeric)
    # uvicorn configured its loggers with handlers of its own before the app existed; send
    # them through ours instead, so its start-up, shutdown and error lines are formatted alike.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(numeric if name == "uvicorn" else logging.NOTSET)
    # uvicorn's access line holds the raw path and query string (ids, whatever a caller put
    # there) and no route, duration or request id; the citewise.access logger writes one line
    # per request instead (api/observability.py).
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    # Python warnings (a library's deprecation notice) would otherwise print plain text.
    logging.captureWarnings(True)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2025-06-01T09:30:00.123Z``."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
