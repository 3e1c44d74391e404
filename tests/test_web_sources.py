"""Web sources for real: a documentation site served on 127.0.0.1 (tests/web_site.py) ingested
by its URL through the real pipeline, parse workers, model and Chroma; re-ingested with
conditional requests; answered from through the HTTP app with citations to the page URLs.

Every test here runs with the network cut to this machine: a connection or a name lookup for
any other address fails the test (``only_this_machine``)."""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise import __version__
from citewise.errors import DocumentError, InvalidRequest
from citewise.search.embeddings import LocalEmbeddings
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.guards import ParseLimits
from ingest.manifest import Manifest
from ingest.pipeline import IngestPipeline
from ingest.report import IngestReport
from ingest.web.address import Scope, under_prefix
from ingest.web.crawl import Site
from ingest.web.extract import parse_page
from ingest.web.fetch import Fetcher, OffSite
from ingest.web.robots import Robots
from ingest.web.sitemaps import parse_sitemap
from tests.cli import citewise_env, command, run, watching
from tests.redis_helpers import drop_jobs
from tests.web_site import BOILERPLATE, serving
from tests.web_site import Site as FixtureSite

DOCS = ["/docs/", "/docs/install", "/docs/billing", "/docs/faq", "/docs/changing"]
DOCS += ["/docs/retired", "/docs/relocated"]


@pytest.fixture(autouse=True)
def only_this_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail any connection to, or lookup of, an address that is not this machine's."""
    attempts: list[str] = []
    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def local(host: Any) -> bool:
        if host in ("localhost", "", None) or isinstance(host, bytes | int):
            return True
        try:
            return ipaddress.ip_address(str(host).strip("[]")).is_loopback
        except ValueError:
            return False

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not local(address[0]):
            attempts.append(str(address))
            raise OSError(f"test refuses a connection to {address!r}")
        return connect(self, address)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not local(host):
            attempts.append(str(host))
            raise OSError(f"test refuses to look up {host!r}")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield attempts
    assert attempts == [], f"something reached outside this machine: {attempts}"


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with serving() as served:
        yield served


@pytest.fixture
def web_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(web_delay_s=0, web_retries=1, web_misses=2, redis_url="off")


@pytest.fixture
def ingest_site(web_settings: Settings, embeddings: LocalEmbeddings) -> Callable[..., IngestReport]:
    def run(site: Site, *, dry_run: bool = False, **options: Any) -> IngestReport:
        settings = web_settings.replace(**options) if options else web_settings
        store = build_store(settings, create=not dry_run)
        try:
            return IngestPipeline(settings, store, embeddings).run_web(site, "web", dry_run=dry_run)
        finally:
            store.close()

    return run


def chunks(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    store = build_store(settings)
    try:
        _, texts, metadatas = store.knowledge_base("web").all_chunks()
    finally:
        store.close()
    return list(zip(texts, metadatas, strict=True))


def test_a_site_is_ingested_then_kept_in_step_paying_only_for_what_changed(
    site: FixtureSite, ingest_site: Callable[..., IngestReport], web_settings: Settings
) -> None:
    docs = Site(site.base + "/docs/")
    first = ingest_site(docs)
    assert site.agents == {f"Citewise/{__version__}"}

    assert sorted(first.added) == sorted(site.base + p for p in DOCS)
    assert first.web is not None and first.web["mode"] == "sitemap"
    # robots.txt kept the private page out; the prefix kept the blog out; both unrequested.
    assert first.skip_reasons == {f"{site.base}/docs/private/roadmap": "robots.txt disallows it"}
    assert site.requested("/docs/private/roadmap") == site.requested("/blog/post") == []
    # A failing page and a redirect off the site are reported by URL, and the run went on.
    failures = {f.path: f.error for f in first.failures}
    assert failures[f"{site.base}/docs/broken"].startswith("HTTP 503")
    assert "leads off the site" in failures[f"{site.base}/docs/away"]
    assert site.requested("/docs/broken") == [503, 503]  # retried once
    # The redirect's target and the canonical page are one document each.
    assert first.web["duplicates"] == 1  # the printable billing page is the billing page
    stored = chunks(web_settings)
    sources = {m["source"] for _, m in stored}
    assert f"{site.base}/docs/relocated" in sources and all("print" not in s for s in sources)
    # Main content only: no navigation, cookie banner or footer in any chunk.
    for text, metadata in stored:
        assert not any(b.lower() in text.lower() for b in BOILERPLATE), text
        assert metadata["url"] == metadata["source"]
    anchors = {m.get("anchor") for _, m in stored if m["source"].endswith("/docs/install")}
    assert anchors == {"installing-acme", "requirements", "proxy"}

    # Nothing changed: every page asked for conditionally and answered 304, nothing embedded.
    site.clear_log()
    again = ingest_site(docs)
    assert again.chunks_embedded == 0 and again.files_unchanged == len(DOCS)
    assert again.added == again.changed == again.deleted == []
    answered = {p: site.requested(p) for p in site.pages if site.requested(p)}
    # /docs/install is not asked for at all: its sitemap lastmod had not moved.
    not_modified = [p for p in [*DOCS, "/docs/print/billing"] if p != "/docs/install"]
    assert answered == {p: [304] for p in not_modified} | {"/docs/broken": [503, 503]}
    assert again.web is not None and again.web["unchanged_by_lastmod"] == 1

    # One page changed: only it is parsed, and only its changed chunk embedded.
    site.pages["/docs/changing"] = site.pages["/docs/changing"].replace(
        "multi-currency receipts", "multi-currency receipts and mileage claims"
    )
    changed = ingest_site(docs)
    assert changed.changed == [f"{site.base}/docs/changing"] and changed.added == []
    assert changed.chunks_embedded == 1 and changed.files_unchanged == len(DOCS) - 1

    # One page gone: kept after one miss (CITEWISE_WEB_MISSES=2), removed after the second.
    del site.pages["/docs/retired"]
    retired = f"{site.base}/docs/retired"
    missed = ingest_site(docs)
    assert missed.deleted == [] and missed.web is not None
    assert missed.web["missing"] == {retired: 1}
    assert retired in {m["source"] for _, m in chunks(web_settings)}
    removed = ingest_site(docs)
    assert removed.deleted == [retired] and removed.chunks_deleted == 1
    assert retired not in {m["source"] for _, m in chunks(web_settings)}


def test_a_dry_run_lists_what_would_change_and_writes_nothing(
    site: FixtureSite, ingest_site: Callable[..., IngestReport], web_settings: Settings
) -> None:
    docs = Site(site.base + "/docs/", exclude=("/docs/print/*",))
    plan = ingest_site(docs, dry_run=True)
    assert len(plan.added) == len(DOCS) and plan.chunks_embedded > 0
    assert not web_settings.manifest_path.exists()
    ingest_site(docs)
    site.pages["/docs/faq"] = site.pages["/docs/faq"].replace("iOS and Android", "iOS")
    plan = ingest_site(docs, dry_run=True)
    assert plan.changed == [f"{site.base}/docs/faq"] and plan.chunks_embedded == 1
    assert site.requested("/docs/print/billing") == []  # excluded by its pattern
    assert ingest_site(docs).changed == [f"{site.base}/docs/faq"]  # the plan was not applied


def test_a_site_without_a_sitemap_is_crawled_by_its_links_within_its_prefix(
    site: FixtureSite, ingest_site: Callable[..., IngestReport], web_settings: Settings
) -> None:
    site.with_sitemap = False
    site.robots = "User-agent: *\nDisallow: /docs/private/\nCrawl-delay: 0\n"
    report = ingest_site(Site(site.base + "/docs/"))
    assert report.web is not None and report.web["mode"] == "links"
    # Reached by links only: the sitemap's other pages are not linked from anywhere.
    found = {site.base + p for p in ["/docs/", "/docs/install", "/docs/billing", "/docs/faq"]}
    assert found | {f"{site.base}/docs/relocated"} == set(report.added)
    assert site.requested("/blog/") == site.requested("/docs/private/roadmap") == []
    site.clear_log()
    again = ingest_site(Site(site.base + "/docs/"))
    # Pages answered 304 still lead to the pages they link to (their links were kept).
    assert again.files_unchanged == len(report.added) and again.chunks_embedded == 0
    assert site.requested("/docs/faq") == [304]


def test_a_site_that_cannot_say_what_it_allows_is_not_read_and_loses_nothing(
    site: FixtureSite, ingest_site: Callable[..., IngestReport], web_settings: Settings
) -> None:
    docs = Site(site.base + "/docs/", include=("/docs/faq", "/docs/retired"))
    assert len(ingest_site(docs).added) == 2
    site.failing.add("/robots.txt")  # 503: RFC 9309 reads it as "disallow everything"
    del site.pages["/docs/retired"]
    site.clear_log()
    for _ in range(2):  # more runs than CITEWISE_WEB_MISSES: still nothing taken as gone
        report = ingest_site(docs)
        assert "robots.txt could not be read" in report.failures[0].error
        assert report.deleted == [] and report.web is not None and report.web["missing"] == {}
    assert {path for path, _ in site.log} == {"/robots.txt"}
    assert len({m["source"] for _, m in chunks(web_settings)}) == 2


def test_a_sitemap_index_named_as_the_start_url_and_pages_that_fail_in_every_way(
    site: FixtureSite, ingest_site: Callable[..., IngestReport]
) -> None:
    index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{site.base}/sitemap.xml</loc></sitemap></sitemapindex>"
    )
    site.files["/docs/index.xml"] = (index.encode(), "application/xml")
    site.files["/docs/data.json"] = (b'{"a": 1}', "application/json")
    site.pages["/docs/huge"] = site.pages["/docs/faq"].replace("<p>", "<p>" + "word " * 40_000)
    site.slow["/docs/slow"] = 1.5
    site.pages["/docs/slow"] = site.pages["/docs/faq"]
    site.sitemapped[:0] = ["/docs/data.json", "/docs/huge", "/docs/slow"]
    report = ingest_site(
        Site(site.base + "/docs/index.xml", exclude=("/docs/retired",), max_pages=7),
        max_file_mb=0.1,
        web_timeout_s=0.5,
        web_retries=0,
    )
    assert report.web is not None and report.web["sitemaps"] == [
        f"{site.base}/docs/index.xml",
        f"{site.base}/sitemap.xml",
    ]
    failures = {f.path.removeprefix(site.base): f.error for f in report.failures}
    assert failures["/docs/data.json"] == "not an HTML page (content type application/json)"
    assert "over the 0.1 MB limit (CITEWISE_MAX_FILE_MB)" in failures["/docs/huge"]
    assert failures["/docs/slow"].startswith("timed out")
    assert site.requested("/docs/retired") == []  # excluded
    # 12 pages in the scope, not excluded nor disallowed (reported as skipped): 7 requested.
    assert report.web["over_page_limit"] == 5 and report.files_seen == 7 + 1


def test_the_command_watches_a_site_and_reports_when_a_page_changes(
    site: FixtureSite, tmp_path: Path, cache_dir: Path
) -> None:
    env = citewise_env(
        tmp_path / "home", cache_dir, CITEWISE_REDIS_URL="off", CITEWISE_WEB_DELAY_S="0"
    )
    refused = run("ingest", str(tmp_path), "--crawl", env=env)
    assert refused.returncode == 2 and "--crawl and --interval" in refused.stderr
    args = (site.base + "/docs/", "--kb", "web", "--include", "/docs/faq", "--interval", "1")
    with watching(*args, env=env) as watcher:
        try:
            first = watcher.next_report(timeout=300)
            assert first["added"] == [f"{site.base}/docs/faq"] and first["web"]["mode"] == "sitemap"
            while "every 1 s" not in watcher.notes.get(timeout=60):
                pass
            site.pages["/docs/faq"] = site.pages["/docs/faq"].replace("iOS and Android", "iOS")
            second = watcher.next_report(timeout=60)  # quiet runs print nothing in between
            assert second["changed"] == [f"{site.base}/docs/faq"]
            assert second["chunks_embedded"] == 1
        except Empty:
            pytest.fail("the watcher printed no report in time")


def test_requests_to_a_host_are_spaced_by_the_politeness_delay(
    site: FixtureSite, web_settings: Settings
) -> None:
    settings = web_settings.replace(web_delay_s=0.2)
    fetcher = Fetcher(Scope.of(site.base + "/docs/"), settings.ingest, 1 << 20)
    try:
        fetcher.obey(Robots.parse("User-agent: *\nCrawl-delay: 0.3\n"), 0.2)
        started = time.monotonic()
        statuses = [fetcher.get(site.base + "/docs/faq").status for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert time.monotonic() - started >= 0.6  # the site's Crawl-delay, longer than ours
    finally:
        fetcher.close()


def test_answers_cite_the_page_url_and_the_section(
    site: FixtureSite, ingest_site: Callable[..., IngestReport], web_settings: Settings
) -> None:
    ingest_site(Site(site.base + "/docs/"))
    with TestClient(create_app(web_settings)) as client:
        asked = client.post(
            "/v1/ask",
            json={"question": "How soon is a refund for an annual plan issued?", "kb": "web"},
        )
        assert asked.status_code == 200, asked.text
        answer = asked.json()
        assert not answer["refused"] and "14 days" in answer["answer"]
        cited = {c["url"] for c in answer["citations"]}
        assert f"{site.base}/docs/billing#refunds" in cited
        assert answer["sources"][0]["source"] == f"{site.base}/docs/billing"
        # A heading with no anchor: the page URL with a text fragment.
        faq = client.post(
            "/v1/search", json={"query": "export receipts as a ZIP archive", "kb": "web"}
        ).json()["hits"][0]
        assert faq["url"].startswith(f"{site.base}/docs/faq#:~:text=Yes.%20Every%20workspace")


def test_scope_holds_the_prefix_and_the_fetcher_never_leaves_the_origin(
    web_settings: Settings,
) -> None:
    scope = Scope.of("https://Docs.Example.com:443/guide", exclude=("*/old/*",))
    assert scope.root == "https://docs.example.com/guide/"
    assert scope.wanted("https://docs.example.com/guide") and scope.wanted(
        "https://docs.example.com/guide/a?b=1"
    )
    assert not scope.holds("https://docs.example.com/guidelines")
    assert not scope.holds("http://docs.example.com/guide/a")  # another scheme
    assert not scope.wanted("https://docs.example.com/guide/old/a")
    assert Scope.of("https://h.example/docs/sitemap.xml").root == "https://h.example/docs/"
    assert under_prefix("https://h.example/docs/a", ["https://h.example/docs"])
    assert not under_prefix("https://h.example/docsx", ["https://h.example/docs"])
    assert not under_prefix("https://user:pw@h.example/docs/", ["https://h.example/docs/"])

    fetcher = Fetcher(Scope.of("http://127.0.0.1:9/docs/"), web_settings.ingest, 1 << 20)
    try:
        refused = fetcher.get("http://169.254.169.254/latest/meta-data/")
        assert refused.status == 0 and "leads off the site" in (refused.error or "")
        with pytest.raises(OffSite):  # the backstop under every request
            fetcher._send("http://example.org/", {}, refused)
        assert fetcher.requests == 0
    finally:
        fetcher.close()


def test_main_content_keeps_the_anchors_that_documentation_generators_write() -> None:
    sphinx = (
        '<?xml version="1.0" encoding="iso-8859-1"?><html><head><meta charset="iso-8859-1">'
        "<title>Caf\xe9</title></head><body><nav>Home</nav><div role='main'>"
        "<section id='cafe-prices'><h1>Caf\xe9 prices"
        "<a class='headerlink' href='#cafe-prices'>\xb6</a></h1>"
        "<p>The caf\xe9 serves espresso, tea and pastries from seven in the morning.</p>"
        "</section><h2><a name='hours'></a>Opening hours</h2><p>It closes at six in the "
        "evening on weekdays and at noon on Saturdays.</p></div></body></html>"
    ).encode("latin-1")
    page = parse_page(sphinx, "https://docs.example.com/cafe", ParseLimits())
    assert [(b.text, b.anchor) for b in page.blocks if b.is_heading] == [
        ("Café prices", "cafe-prices"),
        ("Opening hours", "hours"),
    ]
    assert page.title == "Café prices" and "Home" not in page.text().split()


def test_hostile_sitemaps_are_refused() -> None:
    bomb = gzip.compress(b"<urlset>" + b" " * (4 << 20) + b"</urlset>")
    with pytest.raises(DocumentError, match="inflating past"):
        parse_sitemap(bomb, 1 << 20)
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<urlset><url><loc>https://h.example/&b;</loc></url></urlset>"
    )
    pages = parse_sitemap(laughs, 1 << 20).pages
    assert all("aaaa" not in loc for loc, _ in pages)  # entities are not expanded
    with pytest.raises(DocumentError, match="not a sitemap"):
        parse_sitemap(b"<html><body>hi</body></html>", 1 << 20)


def test_the_manifest_forgets_a_deleted_page_so_the_next_ingest_fetches_it_again(
    site: FixtureSite, ingest_site: Callable[..., IngestReport], web_settings: Settings
) -> None:
    docs = Site(site.base + "/docs/", include=("/docs/billing",))
    ingest_site(docs)
    billing = f"{site.base}/docs/billing"
    with Manifest.open(web_settings.manifest_path, "web") as manifest:
        assert manifest.web_pages(docs.scope.root)[billing].etag
        manifest.forget(billing)
        assert manifest.web_pages(docs.scope.root) == {}
    assert ingest_site(docs).added == [billing]
    with pytest.raises(InvalidRequest, match="overlaps the web source"):
        ingest_site(Site(site.base + "/docs/install"))  # its pages would be both sources'


def test_the_ingest_job_api_takes_only_urls_under_the_allowed_prefixes(
    site: FixtureSite, tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    key = "admin-key-1234567890abcdef"
    admin = {"Authorization": f"Bearer {key}"}
    env = citewise_env(
        tmp_path / "home",
        cache_dir,
        CITEWISE_REDIS_URL=redis_url,
        CITEWISE_REDIS_PREFIX=redis_prefix,
        CITEWISE_ADMIN_KEYS=key,
        CITEWISE_WEB_DELAY_S="0",
        CITEWISE_WEB_RETRIES="0",
        CITEWISE_WEB_ALLOWED_PREFIXES=json.dumps([site.base + "/docs/"]),
    )
    base = {"home": tmp_path / "home", "cache_dir": cache_dir, "admin_keys": key}
    queue = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    try:
        with TestClient(create_app(Settings(**base, **queue))) as client:
            off = client.post("/v1/kbs/web/ingest", json={"url": site.base}, headers=admin)
            assert off.status_code == 400 and "CITEWISE_WEB_ALLOWED_PREFIXES" in off.text
        allowed = Settings(**base, **queue, web_allowed_prefixes=[site.base + "/docs/"])
        with TestClient(create_app(allowed)) as client:
            for url in [f"{site.base}/admin", "http://10.0.0.1/docs/", "file:///etc/passwd"]:
                refused = client.post("/v1/kbs/web/ingest", json={"url": url}, headers=admin)
                assert refused.status_code == 400, url
            queued = client.post(
                "/v1/kbs/web/ingest",
                json={"url": site.base + "/docs/", "include": ["/docs/billing"]},
                headers=admin,
            )
            assert queued.status_code == 202, queued.text
            done = subprocess.run(
                command("worker", "--burst"), env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr[-2000:]
            job = client.get(f"/v1/jobs/{queued.json()['job_id']}", headers=admin).json()
            assert job["state"] == "finished", job
            assert job["report"]["added"] == [f"{site.base}/docs/billing"]
            assert job["report"]["web"]["mode"] == "sitemap"
            hits = client.post("/v1/search", json={"query": "annual plan refund", "kb": "web"})
            assert hits.json()["hits"][0]["url"] == f"{site.base}/docs/billing#refunds"
    finally:
        drop_jobs(redis_url, redis_prefix)
