"""Which URLs a web source may reach: its origin and path prefix, and the operator's patterns.

A web source is named by a start URL. Its *scope* is the start URL's scheme, host, port and
path prefix: ``https://docs.example.com/guide/`` holds ``/guide/`` and everything under it;
``https://docs.example.com/guide`` holds ``/guide`` and ``/guide/...`` (not ``/guidelines``);
a start URL naming a file (``/docs/index.html``, ``/docs/sitemap.xml``) holds its folder. No
request of a web source leaves its origin, and no page outside its prefix is read: a link or
a redirect that does is not followed (``ingest.web.fetch``).

Addresses are compared in one normal form (``normal``): scheme and host in lower case, the
default port dropped, the fragment dropped, an empty path written ``/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urljoin, urlsplit, urlunsplit

from citewise.errors import InvalidRequest

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_web(target: str) -> bool:
    """Whether an ingest target names a web source rather than a path."""
    return target[:8].lower().startswith(("http://", "https://"))


def normal(url: str) -> str | None:
    """``url`` in normal form, or None when it is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # credentials in a URL are never sent, nor stored as a document's key
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def resolve(base: str, link: str) -> str | None:
    """A link on page ``base`` as an absolute URL in normal form (None: not http(s))."""
    try:
        return normal(urljoin(base, link.strip()))
    except ValueError:
        return None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Scope:
    """A web source's reach: ``root`` is its origin and path prefix (``https://h/guide/``);
    ``exact`` is a path held without a trailing slash (``/guide``), if any."""

    root: str
    exact: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, start: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> Scope:
        url = normal(start)
        if url is None:
            raise InvalidRequest(f"not an http:// or https:// URL with a host: {start!r}")
        parts = urlsplit(url)
        path, exact = parts.path, None
        if not path.endswith("/"):
            last = path.rsplit("/", 1)[-1]
            if "." in last:  # a file (index.html, sitemap.xml): its folder
                path = path[: len(path) - len(last)]
            else:
                exact, path = path, path + "/"
        return cls(f"{origin(url)}{path}", exact, tuple(include), tuple(exclude))

    @property
    def origin(self) -> str:
        return origin(self.root)

    def same_origin(self, url: str) -> bool:
        return origin(url) == self.origin

    def holds(self, url: str) -> bool:
        """Whether ``url`` (normal form) is under the prefix."""
        if not self.same_origin(url):
            return False
        path = urlsplit(url).path
        return path.startswith(urlsplit(self.root).path) or path == self.exact

    def wanted(self, url: str) -> bool:
        """Held, and chosen by the include and exclude patterns (globs on path and query)."""
        if not self.holds(url):
            return False
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if any(fnmatchcase(target, pattern) for pattern in self.exclude):
            return False
        return not self.include or any(fnmatchcase(target, p) for p in self.include)


def under_prefix(url: str, prefixes: list[str]) -> bool:
    """Whether ``url`` lies under one of ``prefixes`` (``CITEWISE_WEB_ALLOWED_PREFIXES``), on
    the same origin and at a path boundary."""
    target = normal(url)
    if target is None:
        return False
    for prefix in prefixes:
        allowed = normal(prefix)
        if allowed is None or origin(allowed) != origin(target):
            continue
        base, path = urlsplit(allowed).path, urlsplit(target).path
        if path == base or path.startswith(base if base.endswith("/") else base + "/"):
            return True
    return False
