"""A small documentation site served on 127.0.0.1 by ``http.server`` in a thread, for the web
source tests and ``bench/web_crawl.py``: pages with navigation, a cookie banner and a footer,
a sitemap, a robots.txt, ETags and Last-Modified, a redirect, a canonical link, a page that
fails, links and a redirect off the site; pages can be changed or removed between ingests, and
every request is logged."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAV = (
    '<header><nav class="topbar"><a href="/docs/">Acme Docs</a> <a href="/docs/install">Install'
    '</a> <a href="/docs/billing">Billing</a> <a href="/docs/faq">FAQ</a> <a href="/blog/">Blog'
    '</a> <a href="https://example.org/partners">Partners</a></nav></header>'
    '<div class="cookie-banner" id="cookies">We use cookies to improve your experience. '
    "<button>Accept all cookies</button></div>"
    '<aside class="sidebar"><ul><li><a href="/docs/install">Installing Acme</a></li>'
    '<li><a href="/docs/billing">Billing and refunds</a></li>'
    '<li><a href="/docs/print/billing">Printable billing page</a></li>'
    '<li><a href="/docs/private/roadmap">Roadmap</a></li>'
    '<li><a href="/docs/moved">Moved page</a></li><li><a href="/docs/away">Partner portal</a>'
    "</li></ul></aside>"
)
FOOTER = (
    "<footer><p>Copyright 2026 Acme Incorporated. All rights reserved. Privacy policy. "
    'Terms of service. <a href="/docs/">Home</a></p></footer>'
)
BOILERPLATE = ("All rights reserved", "cookies", "Terms of service", "Printable billing page")


def page(title: str, body: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title} | Acme Docs</title>"
        f"{head}</head><body>{NAV}<main><article>{body}</article></main>{FOOTER}</body></html>"
    )


def pages() -> dict[str, str]:
    """The site's pages by path (changed and removed by the tests as they go)."""
    return {
        "/docs/": page(
            "Acme documentation",
            "<h1 id='welcome'>Acme documentation</h1><p>Acme keeps your team's expenses in one "
            "place. Start with the installation guide, then read how billing and refunds work."
            "</p><p>Every page of this documentation is kept up to date by the Acme team.</p>",
        ),
        "/docs/install": page(
            "Installing Acme",
            "<h1 id='installing-acme'>Installing Acme</h1><p>Acme runs on Linux and macOS. "
            "This guide installs the command-line tool and checks that it works.</p>"
            "<h2 id='requirements'>Requirements<a class='headerlink' href='#requirements'>¶</a>"
            "</h2><p>You need Python 3.11 or newer and two gigabytes of free disk space before "
            "you install Acme.</p><section id='proxy'><h2>Installing behind a proxy</h2><p>Set "
            "the HTTPS_PROXY variable to the address of your proxy before you run the "
            "installer; the installer reads it and sends every download through it.</p>"
            "</section>",
        ),
        "/docs/billing": page(
            "Billing and refunds",
            "<h1 id='billing'>Billing and refunds</h1><p>Acme bills each workspace monthly, "
            "on the day the workspace was created.</p><h2 id='refunds'>Refunds</h2><p>A refund "
            "for an annual plan is issued within 14 days of the cancellation request, to the "
            "card that paid for the plan. Monthly plans are not refunded.</p>",
        ),
        "/docs/print/billing": page(
            "Billing and refunds (print)",
            "<h1>Billing and refunds</h1><p>Acme bills each workspace monthly, on the day the "
            "workspace was created.</p><h2>Refunds</h2><p>A refund for an annual plan is issued "
            "within 14 days of the cancellation request, to the card that paid for the plan. "
            "Monthly plans are not refunded.</p><p>Printed from the Acme documentation.</p>",
            head="<link rel='canonical' href='/docs/billing'>",
        ),
        "/docs/faq": page(
            "Frequently asked questions",
            "<h1>Frequently asked questions</h1><h2>Can I export my data?</h2><p>Yes. Every "
            "workspace owner can export all receipts as a ZIP archive from the settings page."
            "</p><h2>Is there a mobile app?</h2><p>The Acme mobile app runs on iOS and Android "
            "and scans paper receipts with the phone's camera.</p>",
        ),
        "/docs/changing": page(
            "Release notes",
            "<h1 id='release-notes'>Release notes</h1><h2 id='v1'>Version 1.0</h2><p>The first "
            "release of Acme tracks expenses and exports them as CSV files for accounting.</p>"
            "<h2 id='v2'>Version 2.0</h2><p>Version 2.0 adds multi-currency receipts, converted "
            "at the daily rate of the European Central Bank.</p>",
        ),
        "/docs/retired": page(
            "Legacy importer",
            "<h1 id='legacy'>Legacy importer</h1><p>The legacy importer reads spreadsheets "
            "exported from the old Acme desktop application and turns each row into a receipt."
            "</p>",
        ),
        "/docs/relocated": page(
            "Receipts",
            "<h1 id='receipts'>Receipts</h1><p>Photograph a receipt and Acme reads the merchant, "
            "the date and the amount from it within a few seconds.</p>",
        ),
        "/docs/broken": page("Broken", "<h1>Broken</h1><p>Never served.</p>"),
        "/docs/private/roadmap": page(
            "Roadmap", "<h1>Roadmap</h1><p>Secret plans that robots.txt keeps out.</p>"
        ),
        "/blog/post": page("Blog", "<h1>Blog</h1><p>Outside the documentation prefix.</p>"),
    }


ROBOTS = "User-agent: *\nDisallow: /docs/private/\n\nSitemap: {base}/sitemap.xml\n"
SITEMAPPED = [
    "/docs/",
    "/docs/install",
    "/docs/billing",
    "/docs/print/billing",
    "/docs/faq",
    "/docs/changing",
    "/docs/retired",
    "/docs/moved",
    "/docs/away",
    "/docs/broken",
    "/docs/private/roadmap",
    "/blog/post",
]
REDIRECTS = {"/docs/moved": "/docs/relocated", "/docs/away": "https://example.org/portal"}
FAILING = {"/docs/broken"}


@dataclass
class Site:
    """The site's state; the handler reads it on every request."""

    pages: dict[str, str] = field(default_factory=pages)
    sitemapped: list[str] = field(default_factory=lambda: list(SITEMAPPED))
    lastmod: dict[str, str] = field(default_factory=lambda: {"/docs/install": "2026-01-05"})
    redirects: dict[str, str] = field(default_factory=lambda: dict(REDIRECTS))
    failing: set[str] = field(default_factory=lambda: set(FAILING))
    robots: str | None = ROBOTS
    with_sitemap: bool = True
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # path -> (body, type)
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    log: list[tuple[str, int]] = field(default_factory=list)  # (path, status), in order
    agents: set[str] = field(default_factory=set)  # User-Agent headers seen
    base: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def requested(self, path: str) -> list[int]:
        """The statuses ``path`` was answered with."""
        with self._lock:
            return [status for p, status in self.log if p == path]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def sitemap(self) -> str:
        entries = []
        for path in self.sitemapped:
            modified = self.lastmod.get(path)
            stamp = f"<lastmod>{modified}</lastmod>" if modified else ""
            entries.append(f"<url><loc>{self.base}{path}</loc>{stamp}</url>")
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(entries)
            + "</urlset>"
        )


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        site, path = self.site, self.path
        with site._lock:
            site.agents.add(self.headers.get("User-Agent", ""))
        if path in site.slow:
            threading.Event().wait(site.slow[path])
        if path in site.files:
            self._send(200, *site.files[path])
        elif path in site.failing:
            self._send(503, b"down for maintenance", "text/plain", {"Retry-After": "0"})
        elif path == "/robots.txt" and site.robots is not None:
            self._send(200, site.robots.format(base=site.base).encode(), "text/plain")
        elif path == "/sitemap.xml" and site.with_sitemap:
            self._send(200, site.sitemap().encode(), "application/xml")
        elif path in site.redirects:
            target = site.redirects[path]
            self._send(301, b"", "text/html", {"Location": target})
        elif path in site.pages:
            body = site.pages[path].encode()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self._send(304, b"", None, {"ETag": etag})
            else:
                self._send(200, body, "text/html; charset=utf-8", {"ETag": etag})
        else:
            self._send(404, b"not found", "text/plain")

    def _send(
        self, status: int, body: bytes, kind: str | None, headers: dict[str, str] | None = None
    ) -> None:
        with self.site._lock:
            self.site.log.append((self.path, status))
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Last-Modified", formatdate(0, usegmt=True))
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (a page over its size limit, a timeout) is no error here


@contextmanager
def serving(site: Site | None = None) -> Iterator[Site]:
    """Serve ``site`` (a fresh one by default) on a free port of 127.0.0.1."""
    site = site or Site()
    handler = type("Handler", (_Handler,), {"site": site})
    server = _Server(("127.0.0.1", 0), handler)
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
