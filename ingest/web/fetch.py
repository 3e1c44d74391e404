"""Every request a web source makes goes through ``Fetcher.get``: the one place that touches
the network, and so the one place that keeps it to what the operator asked for.

- Only the source's origin (scheme, host, port) is ever requested; anything else raises
  ``OffSite`` before a connection is made, whoever asked (a link, a redirect, a sitemap entry).
- Redirects are followed by hand, hop by hop: a page may only be redirected within the
  source's prefix and to paths robots.txt allows; robots.txt and sitemaps within the origin.
- Requests start at least CITEWISE_WEB_DELAY_S apart (or the site's Crawl-delay), and at most
  CITEWISE_WEB_CONCURRENCY are in flight (the caller's thread pool).
- A timeout, a refused connection, 429 or 5xx is retried CITEWISE_WEB_RETRIES times after
  1, 2, 4... seconds, or after the Retry-After the server gave (30 s at most), by tenacity.
- A body is read up to CITEWISE_MAX_FILE_MB, decompressed bytes counted: a larger page (or a
  gzip bomb) is refused once it passes the limit, not after.
- Environment proxies are not used (``trust_env=False``); CITEWISE_WEB_PROXY names one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
)

from citewise.settings import IngestSettings
from ingest.web.address import Scope, resolve
from ingest.web.robots import USER_AGENT, Robots

HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_REDIRECTS = 5
MAX_RETRY_AFTER_S = 30.0
_REDIRECTS = (301, 302, 303, 307, 308)
_MB = 1 << 20


class OffSite(Exception):
    """Raised when a request would leave the web source's origin (a bug if ever raised: every
    caller checks first; this is the backstop)."""


@dataclass
class Answer:
    """What a GET came to. ``status`` 0: no answer (``error`` says why)."""

    url: str  # as requested
    final: str  # after redirects
    status: int = 0
    body: bytes | None = None  # 200 only
    etag: str | None = None
    last_modified: str | None = None
    content_type: str = ""
    error: str | None = None
    refused: bool = False  # not requested (or a redirect not followed): off the site, robots


class _Pacer:
    """Hands out request start times at least ``delay`` apart (thread-safe)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.delay
        if start > now:
            time.sleep(start - now)


class Fetcher:
    """Requests for one web source (one origin). Close it when the run ends."""

    def __init__(
        self,
        scope: Scope,
        settings: IngestSettings,
        max_bytes: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.scope = scope
        self.robots = Robots.everything()
        self.max_bytes = max_bytes
        self.retries = settings.web_retries
        self.requests = 0
        self.downloaded = 0
        self._count = threading.Lock()
        self._pacer = _Pacer(settings.web_delay_s)
        self._client = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            timeout=settings.web_timeout_s,
            follow_redirects=False,
            trust_env=False,
            proxy=settings.web_proxy,
            transport=transport,
            limits=httpx.Limits(max_connections=settings.web_concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def obey(self, robots: Robots, floor_delay: float) -> None:
        """Use the site's rules from now on, and its Crawl-delay if longer than ours."""
        self.robots = robots
        self._pacer.delay = max(floor_delay, robots.delay())

    def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        page: bool = True,
    ) -> Answer:
        """GET ``url`` (normal form), conditionally when validators are given. ``page``: an
        HTML page of the source (redirects must stay in its prefix, robots.txt is obeyed);
        otherwise a file of the site (robots.txt, a sitemap: anywhere on the origin)."""
        answer = Answer(url, url)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            answer.final = target
            if reason := self._refusal(target, page):
                answer.error, answer.refused = reason, True
                return answer
            response = self._send(target, headers, answer)
            if response is None:
                return answer
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    following = resolve(target, location)
                    if following is None:
                        answer.error = "redirected to an address that is not http(s)"
                        return answer
                    target = following
                    continue
                self._read(response, answer, page)
            finally:
                response.close()
            return answer
        answer.error = f"more than {MAX_REDIRECTS} redirects"
        return answer

    def _refusal(self, url: str, page: bool) -> str | None:
        if not self.scope.same_origin(url):
            return f"leads off the site, to {url} (not followed)"
        if page and not self.scope.holds(url):
            return f"leads outside {self.scope.root}, to {url} (not followed)"
        if page and not self.robots.allowed(url):
            return f"robots.txt disallows {url} for {USER_AGENT}"
        return None

    def _send(self, url: str, headers: dict[str, str], answer: Answer) -> httpx.Response | None:
        """The response (open, streaming), after retries (tenacity); None with
        ``answer.error`` set."""
        if not self.scope.same_origin(url):
            raise OffSite(url)
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=_pause,
            retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(_overloaded),
            retry_error_callback=lambda _: None,  # answer.error says what the last try met
        )
        tries = iter(range(1, self.retries + 2))
        response: httpx.Response | None = retrying(self._try, url, headers, answer, tries)
        return response

    def _try(
        self, url: str, headers: dict[str, str], answer: Answer, tries: Iterator[int]
    ) -> httpx.Response:
        """One request; a timeout, a connection that fails, 429 or 5xx is noted on ``answer``
        (a 429 or 5xx comes back closed, for its Retry-After)."""
        tried = next(tries)
        self._pacer.wait()
        with self._count:
            self.requests += 1
        try:
            request = self._client.build_request("GET", url, headers=headers)
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException:
            answer.error = f"timed out (CITEWISE_WEB_TIMEOUT_S) (tried {tried} times)"
            raise
        except httpx.TransportError as exc:
            answer.error = f"no answer ({type(exc).__name__}) (tried {tried} times)"
            raise
        if _overloaded(response):
            answer.status = response.status_code
            answer.error = f"HTTP {response.status_code} (tried {tried} times)"
            response.close()
        else:
            answer.error = None
        return response

    def _read(self, response: httpx.Response, answer: Answer, page: bool) -> None:
        answer.status = response.status_code
        answer.etag = response.headers.get("etag")
        answer.last_modified = response.headers.get("last-modified")
        answer.content_type = response.headers.get("content-type", "")
        if response.status_code != 200:
            if response.status_code not in (304, 404, 410):
                answer.error = f"HTTP {response.status_code}"
            return
        kind = answer.content_type.split(";")[0].strip().lower()
        if page and kind and kind not in HTML_TYPES:
            answer.error = f"not an HTML page (content type {kind})"
            return
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            answer.error = self._too_large(int(declared))
            return
        chunks, total = [], 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > self.max_bytes:
                    answer.error = self._too_large(total)
                    return
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            answer.error = f"the answer broke off ({type(exc).__name__})"
            return
        with self._count:
            self.downloaded += total
        answer.body = b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return (
            f"{size / _MB:.3g} MB or more, over the {self.max_bytes / _MB:.3g} MB limit "
            "(CITEWISE_MAX_FILE_MB)"
        )


def _overloaded(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _pause(state: RetryCallState) -> float:
    """1, 2, 4... seconds between tries, or the Retry-After a 429 or 5xx gave."""
    backoff = 2.0 ** (state.attempt_number - 1)
    outcome = state.outcome
    if outcome is not None and not outcome.failed:
        return _retry_after(outcome.result().headers.get("retry-after"), backoff)
    return backoff


def _retry_after(value: str | None, default: float) -> float:
    if value is not None and value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER_S)
    return default
