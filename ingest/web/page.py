"""A fetched page waiting for its parse worker: the body spooled to a file, with the document
it becomes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebPage:
    """``source`` is the document's key, the page's URL (its canonical address when the page
    names one in its prefix); ``root`` is the web source's, as its documents' manifest rows
    record it. The body is read from ``path`` beneath ``spool`` (``ingest.opening``)."""

    root: str
    source: str
    spool: Path
    path: Path
    content_type: str = ""

    @property
    def anchor(self) -> Path:
        return self.spool
