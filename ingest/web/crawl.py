"""One pass over a web source: which pages there are, and what each answered.

Pages come from the site's sitemap when it has one (``<prefix>/sitemap.xml``, the ``Sitemap:``
lines of robots.txt, ``/sitemap.xml``; a sitemap index is followed; a sitemap URL may be the
start URL itself), else from its links, breadth first from the start URL. Either way only
URLs in the source's scope and chosen by its patterns are requested (``ingest.web.address``),
robots.txt is obeyed and at most ``max_pages`` pages are requested.

Each page is asked for as cheaply as what is known of it allows (``_visit``):

- its sitemap ``lastmod`` is no later than at its last fetch: taken as unchanged, no request;
- it was fetched before and its document is stored: a conditional GET (``If-None-Match`` /
  ``If-Modified-Since``); 304 means unchanged, and its links are the ones kept from last time;
- otherwise, or on 200: the body is hashed; the same bytes as the stored document's are
  unchanged too; other bytes are spooled to disk for a parse worker.

Nothing here writes to the manifest or the store: the pipeline decides what the answers mean
for each document (``IngestPipeline.run_web``).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from citewise.errors import DocumentError
from citewise.settings import Settings
from ingest.manifest import DONE, FileRecord, WebPageRecord
from ingest.report import IngestReport
from ingest.web.address import Scope, normal
from ingest.web.fetch import Answer, Fetcher
from ingest.web.links import page_links
from ingest.web.robots import MAX_ROBOTS_BYTES, Robots
from ingest.web.sitemaps import MAX_SITEMAPS, parse_sitemap

_MB = 1024 * 1024
CHANGED, UNCHANGED, GONE, FAILED, SKIPPED = "changed", "unchanged", "gone", "failed", "skipped"
# Links to these are not pages: a crawl does not request them.
_NOT_PAGES = (
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js", ".map", ".json",
    ".xml", ".gz", ".zip", ".tar", ".tgz", ".pdf", ".mp3", ".mp4", ".webm", ".woff", ".woff2",
    ".ttf", ".eot", ".txt", ".csv",
)  # fmt: skip


@dataclass(frozen=True)
class Site:
    """A web source as one ingest names it: start URL, patterns and page limit, and whether
    to look for a sitemap at all (``crawl``: follow links only)."""

    url: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_pages: int | None = None
    crawl: bool = False

    @property
    def scope(self) -> Scope:
        return Scope.of(self.url, self.include, self.exclude)


@dataclass
class Page:
    """What one URL came to. ``record`` is what to remember of the fetch once its document is
    stored; ``body`` the spooled page when it must be parsed (``CHANGED``)."""

    url: str
    kind: str
    source: str | None = None
    record: WebPageRecord | None = None
    body: Path | None = None
    body_hash: str | None = None
    content_type: str = ""
    reason: str | None = None  # why failed or skipped; for unchanged, how it was known
    links: tuple[str, ...] = ()
    final: str | None = None  # where redirects led, when they did


@dataclass
class CrawlResult:
    pages: list[Page] = field(default_factory=list)
    mode: str = "links"  # or "sitemap"
    sitemaps: list[str] = field(default_factory=list)
    # False when the site could not be read at all (robots.txt unreachable, a sitemap named as
    # the start URL unreadable): no page may then be counted as missing.
    complete: bool = True
    error: str | None = None
    over_limit: int = 0  # pages found but not requested (max_pages)


class Crawler:
    """Runs one pass; ``known`` is what the last fetches said (by URL requested), ``documents``
    the stored documents (by key), ``fresh`` asks for every page in full (a changed pipeline,
    a rebuild)."""

    def __init__(
        self,
        site: Site,
        fetcher: Fetcher,
        known: dict[str, WebPageRecord],
        documents: dict[str, FileRecord],
        *,
        spool: Path,
        max_pages: int,
        concurrency: int,
        delay: float,
        trust_lastmod: bool,
        fresh: bool,
        on_start: Callable[[int], None] = lambda total: None,
        on_page: Callable[[str], None] = lambda url: None,
    ) -> None:
        self.site, self.scope, self.fetcher = site, site.scope, fetcher
        self.known, self.documents = known, documents
        self.spool, self.max_pages, self.concurrency = spool, max_pages, concurrency
        self.delay, self.trust_lastmod, self.fresh = delay, trust_lastmod, fresh
        self.on_start, self.on_page = on_start, on_page

    def run(self) -> CrawlResult:
        result = CrawlResult()
        robots = self._robots(result)
        if robots is None:
            return result
        self.fetcher.obey(robots, self.delay)
        entries = None if self.site.crawl else self._sitemap_entries(robots, result)
        if not result.complete:
            return result
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="citewise-web") as pool:
            if entries:
                result.mode = "sitemap"
                self._from_sitemap(entries, pool, result)
            else:
                self._from_links(pool, result)
        return result

    # --- what the site says about itself ------------------------------------------------

    def _robots(self, result: CrawlResult) -> Robots | None:
        answer = self._file(f"{self.scope.origin}/robots.txt")
        if answer.status == 200 and answer.body is not None:
            return Robots.parse(answer.body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace"))
        if 400 <= answer.status < 500 or answer.refused:
            return Robots.everything()  # none, or redirected off the site: RFC 9309 says none
        result.complete = False
        result.error = (
            f"robots.txt could not be read ({answer.error or answer.status}): no page was "
            "fetched and none is taken as gone (RFC 9309 reads that as 'disallow everything')"
        )
        return None

    def _sitemap_entries(
        self, robots: Robots, result: CrawlResult
    ) -> list[tuple[str, str | None]] | None:
        """The sitemap's pages in the scope (with their lastmod), or None: no sitemap."""
        start = normal(self.site.url) or self.scope.root
        given = urlsplit(start).path.endswith((".xml", ".xml.gz"))
        candidates = [start]
        if not given:
            candidates = [self.scope.root + "sitemap.xml", *robots.sitemaps]
            candidates.append(self.scope.origin + "/sitemap.xml")
        entries: dict[str, str | None] = {}
        queue: deque[str] = deque()
        for candidate in candidates:
            address = normal(candidate)
            if address is not None and self.scope.same_origin(address):
                queue.append(address)
        read: set[str] = set()
        while queue and len(read) < MAX_SITEMAPS:
            url = queue.popleft()
            if url in read:
                continue
            read.add(url)
            answer = self._file(url)
            try:
                if answer.status != 200 or answer.body is None:
                    raise DocumentError(answer.error or f"HTTP {answer.status}")
                sitemap = parse_sitemap(answer.body, self.fetcher.max_bytes)
            except DocumentError as exc:
                if given and url == start:
                    result.complete = False
                    result.error = f"the sitemap {url} could not be read ({exc})"
                continue
            result.sitemaps.append(url)
            for child in sitemap.children:
                address = normal(child)
                if address is not None and self.scope.same_origin(address):
                    queue.append(address)
            for loc, modified in sitemap.pages:
                entries.setdefault(loc, modified)
        wanted = []
        for loc, modified in entries.items():
            page = normal(loc)
            if page is not None and self.scope.wanted(page):
                wanted.append((page, modified))
        return wanted or None

    def _file(self, url: str) -> Answer:
        """robots.txt or a sitemap; an answer that breaks the client is no answer."""
        try:
            return self.fetcher.get(url, page=False)
        except Exception as exc:
            return Answer(url, url, error=f"{type(exc).__name__} while fetching")

    # --- the passes -------------------------------------------------------------------

    def _from_sitemap(
        self, entries: list[tuple[str, str | None]], pool: ThreadPoolExecutor, result: CrawlResult
    ) -> None:
        allowed = []
        for url, modified in entries:
            if not self.fetcher.robots.allowed(url):
                result.pages.append(Page(url, SKIPPED, reason="robots.txt disallows it"))
            else:
                allowed.append((url, modified))
        result.over_limit = max(0, len(allowed) - self.max_pages)
        self.on_start(min(len(allowed), self.max_pages))
        for page in pool.map(lambda e: self._visit(*e), allowed[: self.max_pages]):
            self.on_page(page.url)
            result.pages.append(page)

    def _from_links(self, pool: ThreadPoolExecutor, result: CrawlResult) -> None:
        start = normal(self.site.url) or self.scope.root
        self.on_start(self.max_pages)  # at most; a crawl learns how many as it goes
        frontier, seen = deque([start]), {start}
        admitted = 0
        running: dict[Future[Page], str] = {}
        while frontier or running:
            while frontier and len(running) < self.concurrency * 2:
                url = frontier.popleft()
                if admitted >= self.max_pages:
                    result.over_limit += 1
                    continue
                admitted += 1
                running[pool.submit(self._visit, url, None, url == start)] = url
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.pop(future)
                page = future.result()
                self.on_page(page.url)
                result.pages.append(page)
                if page.final is not None:
                    seen.add(page.final)  # a link to where a redirect led is the same page
                for link in page.links:
                    if link in seen or not self._followable(link):
                        continue
                    seen.add(link)
                    if self.fetcher.robots.allowed(link):
                        frontier.append(link)
                    else:
                        result.pages.append(Page(link, SKIPPED, reason="robots.txt disallows it"))

    def _followable(self, link: str) -> bool:
        return self.scope.wanted(link) and not urlsplit(link).path.lower().endswith(_NOT_PAGES)

    # --- one page ---------------------------------------------------------------------

    def _visit(self, url: str, modified: str | None, start: bool = False) -> Page:
        """Ask for one page as cheaply as what is known of it allows (the module says how);
        whatever goes wrong costs this page, never the run."""
        try:
            return self._ask(url, modified, start)
        except Exception as exc:  # an odd answer the client or a parser chokes on
            known = self.known.get(url)
            source = known.source if known else None
            return Page(url, FAILED, source, reason=f"{type(exc).__name__} while fetching")

    def _ask(self, url: str, modified: str | None, start: bool) -> Page:
        known = self.known.get(url)
        stored = self.documents.get(known.source) if known is not None else None
        usable = known is not None and stored is not None and stored.status == DONE
        usable = usable and not self.fresh
        recent = bool(known and known.lastmod and modified and modified <= known.lastmod)
        if usable and known is not None and self.trust_lastmod and recent:
            return Page(url, UNCHANGED, known.source, known, reason="sitemap lastmod",
                        links=known.links or ())  # fmt: skip
        answer = self.fetcher.get(
            url,
            etag=known.etag if usable and known else None,
            last_modified=known.last_modified if usable and known else None,
        )
        if answer.status == 304 and usable and known is not None:
            record = replace(known, lastmod=modified or known.lastmod)
            if answer.etag:
                record = replace(record, etag=answer.etag)
            return Page(url, UNCHANGED, known.source, record, reason="304",
                        links=known.links or ())  # fmt: skip
        if answer.status in (404, 410):
            return Page(url, GONE, known.source if known else None, reason=f"HTTP {answer.status}")
        if answer.error is not None or answer.body is None:
            reason = answer.error or f"HTTP {answer.status} with no page"
            return Page(url, FAILED, known.source if known else None, reason=reason)
        final = answer.final if answer.final != url else None
        found = page_links(answer.body, answer.final)
        links = () if found.nofollow else tuple(found.links)
        key = answer.final
        if found.canonical and self.scope.holds(found.canonical):
            key = found.canonical
        if found.noindex or (start and not self.scope.wanted(key)):
            why = "the page asks not to be indexed (robots meta noindex)" if found.noindex else ""
            return Page(url, SKIPPED, reason=why or "read for its links only", links=links)
        body_hash = hashlib.sha256(answer.body).hexdigest()
        record = WebPageRecord(url, self.scope.root, key, answer.etag, answer.last_modified,
                               modified, links)  # fmt: skip
        stored = self.documents.get(key)
        if not self.fresh and stored and stored.status == DONE and stored.file_hash == body_hash:
            return Page(url, UNCHANGED, key, record, reason="same bytes", links=links, final=final)
        body = self.spool / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".html")
        body.write_bytes(answer.body)
        return Page(url, CHANGED, key, record, body, body_hash, answer.content_type, links=links,
                    final=final)  # fmt: skip


def read_site(
    site: Site,
    settings: Settings,
    known: dict[str, WebPageRecord],
    documents: dict[str, FileRecord],
    spool: Path,
    fresh: bool,
    report: IngestReport,
    on_start: Callable[[int], None],
    on_page: Callable[[str], None],
) -> CrawlResult:
    """One pass over ``site`` with the configured client and limits; what it cost goes in
    ``report.web`` (and the run's failure, if the site could not be read, in its failures)."""
    ingest = settings.ingest
    fetcher = Fetcher(site.scope, ingest, int(settings.limits.max_file_mb * _MB))
    started = time.perf_counter()
    try:
        crawl = Crawler(
            site,
            fetcher,
            known,
            documents,
            spool=spool,
            max_pages=site.max_pages or ingest.web_max_pages,
            concurrency=ingest.web_concurrency,
            delay=ingest.web_delay_s,
            trust_lastmod=ingest.web_trust_lastmod,
            fresh=fresh,
            on_start=on_start,
            on_page=on_page,
        ).run()
    finally:
        fetcher.close()
    report.web = {
        "url": site.url,
        "root": site.scope.root,
        "mode": crawl.mode,
        "sitemaps": crawl.sitemaps,
        "requests": fetcher.requests,
        "bytes_downloaded": fetcher.downloaded,
        "seconds_fetching": round(time.perf_counter() - started, 3),
    }
    if crawl.error:
        report.fail(site.url, crawl.error)
    return crawl
