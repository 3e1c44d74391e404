"""What the crawler needs from a page, read in the ingest process: its links, its canonical
address and its robots meta tag.

lxml's HTML parser runs with a target that keeps only those few attributes and builds no tree,
so a page costs time linear in its size (already capped at CITEWISE_MAX_FILE_MB) and no memory
to speak of; the page's text is read later, in a parse worker under the parse budget
(``ingest.web.extract``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ingest.web.address import resolve


@dataclass
class PageLinks:
    links: list[str] = field(default_factory=list)  # absolute, normal form, in page order
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False


class _Collector:
    """An lxml parser target that keeps hrefs, the canonical link, <base> and robots meta."""

    def __init__(self) -> None:
        self.hrefs: list[str] = []
        self.canonical: str | None = None
        self.base: str | None = None
        self.robots = ""

    def start(self, tag: str, attrib: Any) -> None:
        if tag == "a":
            href = attrib.get("href")
            if href and "nofollow" not in (attrib.get("rel") or "").lower().split():
                self.hrefs.append(href)
        elif tag == "link":
            rels = (attrib.get("rel") or "").lower().split()
            if "canonical" in rels and self.canonical is None and attrib.get("href"):
                self.canonical = attrib.get("href")
        elif tag == "base" and self.base is None and attrib.get("href"):
            self.base = attrib.get("href")
        elif tag == "meta":
            name = (attrib.get("name") or "").lower()
            if name in ("robots", "citewise"):
                self.robots += " " + (attrib.get("content") or "").lower()

    def end(self, tag: str) -> None:
        pass

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


def page_links(body: bytes, url: str) -> PageLinks:
    """The links of the page at ``url`` (its final address), resolved against its <base>."""
    collector = _Collector()
    parser = etree.HTMLParser(target=collector, no_network=True, recover=True)
    try:
        parser.feed(body)
        parser.close()
    except etree.LxmlError:
        pass  # whatever was read before the markup broke is kept
    base = resolve(url, collector.base) if collector.base else url
    base = base or url
    found = PageLinks(noindex="noindex" in collector.robots or "none" in collector.robots)
    found.nofollow = "nofollow" in collector.robots or "none" in collector.robots
    if collector.canonical:
        found.canonical = resolve(base, collector.canonical)
    seen: set[str] = set()
    for href in collector.hrefs:
        link = resolve(base, href)
        if link is not None and link not in seen:
            seen.add(link)
            found.links.append(link)
    return found
