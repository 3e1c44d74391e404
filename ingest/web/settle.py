"""What one pass over a web source means for its documents, decided before anything is written.

- A document is **confirmed** when a page answered for it: unchanged (lastmod, 304, the same
  bytes) or with new content (parsed now; if that fails its last good chunks stay, as for a
  file that no longer parses).
- A document is **unknown** when its page failed (a timeout, 5xx after retries, a page too
  large): nothing is concluded, its count of misses stays as it was.
- Any other document of the source is **missed**: its page answered 404 or 410, left the
  sitemap, is no longer linked, or is now disallowed or excluded. After CITEWISE_WEB_MISSES
  consecutive misses it is removed; until then it stays, and the report says how often it
  has been missed. A pass that could not read the site at all (robots.txt unreachable)
  misses nothing.
- Two URLs that come to one document (a redirect, a canonical link) are one document: the page
  fetched at the document's own URL wins, else the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.manifest import FileRecord, WebPageRecord
from ingest.report import IngestReport
from ingest.web.crawl import CHANGED, FAILED, GONE, SKIPPED, UNCHANGED, CrawlResult, Page
from ingest.web.page import WebPage


@dataclass
class Settlement:
    todo: list[WebPage] = field(default_factory=list)  # to parse, one per document
    # What to remember of the fetches behind each document parsed, once it is stored.
    records: dict[str, list[WebPageRecord]] = field(default_factory=dict)
    kept: list[WebPageRecord] = field(default_factory=list)  # unchanged pages: remember now
    confirmed: set[str] = field(default_factory=set)
    misses: dict[str, int] = field(default_factory=dict)  # document -> misses now
    removed: list[str] = field(default_factory=list)  # documents to remove
    gone_urls: set[str] = field(default_factory=set)  # fetches to forget
    failed: dict[str, str] = field(default_factory=dict)  # URL or document -> why
    skipped: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    duplicates: int = 0


def settle(
    crawl: CrawlResult, root: str, records: dict[str, FileRecord], threshold: int
) -> Settlement:
    out = Settlement()
    chosen: dict[str, Page] = {}
    unknown: set[str] = set()
    for page in crawl.pages:
        if page.kind == UNCHANGED and page.source is not None:
            out.confirmed.add(page.source)
            if page.record is not None:
                out.kept.append(page.record)
            if page.source not in out.unchanged:
                out.unchanged.append(page.source)
        elif page.kind == CHANGED and page.source is not None:
            out.confirmed.add(page.source)
            current = chosen.get(page.source)
            if current is None or (page.url == page.source and current.url != page.source):
                chosen[page.source] = page
            out.duplicates += current is not None
            if page.record is not None:
                out.records.setdefault(page.source, []).append(page.record)
        elif page.kind == FAILED:
            if page.source is not None:
                unknown.add(page.source)
            out.failed[page.url] = page.reason or "failed"
        elif page.kind == SKIPPED:
            out.skipped[page.url] = page.reason or "skipped"
        elif page.kind == GONE:
            out.gone_urls.add(page.url)
    for source, page in chosen.items():
        if source in out.unchanged:  # another URL's copy does not replace it
            out.kept += out.records.pop(source, [])
            continue
        assert page.body is not None
        out.todo.append(WebPage(root, source, page.body.parent, page.body, page.content_type))
    if not crawl.complete:
        return out
    for source, record in sorted(records.items()):
        if record.root != root or source in out.confirmed or source in unknown:
            continue
        misses = record.misses + 1
        if misses >= threshold:
            out.removed.append(source)
        else:
            out.misses[source] = misses
    for source in out.confirmed:
        if source in records and records[source].misses:
            out.misses[source] = 0
    return out


def report_pages(
    report: IngestReport, crawl: CrawlResult, plan: Settlement, records: dict[str, FileRecord]
) -> None:
    """Put a web pass in the report: pages seen, unchanged (and how that was known), missed,
    skipped and failed, by URL."""
    assert report.web is not None
    report.files_seen = len(crawl.pages)
    for source in plan.unchanged:
        report.files_unchanged += 1
        report.chunks_unchanged += records[source].chunk_count if source in records else 0
    how = [p.reason for p in crawl.pages if p.kind == UNCHANGED]
    report.web |= {
        "not_modified": how.count("304"),
        "unchanged_by_lastmod": how.count("sitemap lastmod"),
        "unchanged_same_bytes": how.count("same bytes"),
        "over_page_limit": crawl.over_limit,
        "duplicates": plan.duplicates,
        "missing": {source: n for source, n in sorted(plan.misses.items()) if n},
    }
    for url, reason in plan.skipped.items():
        report.skip(url, reason)
    for url, reason in plan.failed.items():
        report.fail(url, reason)
