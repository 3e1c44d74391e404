"""Sitemaps (sitemaps.org): a ``urlset`` of pages with their ``lastmod``, or a
``sitemapindex`` of further sitemaps; gzipped or not.

A sitemap is hostile input like any file: it is read under the page size limit, inflated
under CITEWISE_MAX_UNCOMPRESSED_MB, and parsed by lxml with entities, DTDs and the network
switched off (no billion laughs, no external entity is fetched).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from citewise.errors import DocumentError

MAX_SITEMAPS = 50  # sitemap files read for one source (an index and its children)


@dataclass
class Sitemap:
    pages: list[tuple[str, str | None]] = field(default_factory=list)  # (loc, lastmod ISO)
    children: list[str] = field(default_factory=list)  # further sitemaps (an index)


def parse_sitemap(data: bytes, max_bytes: int) -> Sitemap:
    """The pages or child sitemaps listed; ``DocumentError`` when it is not a sitemap."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, max_bytes)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentError(f"not a sitemap (XML: {exc.msg})") from None
    kind = etree.QName(root).localname
    if kind not in ("urlset", "sitemapindex"):
        raise DocumentError(f"not a sitemap (its root element is <{kind}>)")
    found = Sitemap()
    for entry in root:
        if not isinstance(entry.tag, str):
            continue  # comments, processing instructions
        values = {etree.QName(child).localname: (child.text or "").strip()
                  for child in entry if isinstance(child.tag, str)}  # fmt: skip
        loc = values.get("loc")
        if not loc:
            continue
        if kind == "sitemapindex":
            found.children.append(loc)
        else:
            found.pages.append((loc, lastmod(values.get("lastmod"))))
    return found


def lastmod(value: str | None) -> str | None:
    """A W3C datetime (``2026-05-01``, ``2026-05-01T10:00:00+02:00``) as UTC ISO 8601, so
    two of them compare as strings; None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise DocumentError(f"a gzipped sitemap that does not inflate ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise DocumentError(
            f"a gzipped sitemap inflating past {max_bytes / (1 << 20):g} MB "
            "(CITEWISE_MAX_UNCOMPRESSED_MB)"
        )
    return out
