"""A site's robots.txt, read with Protego (Scrapy's parser: longest match wins, wildcards,
``Crawl-delay``, ``Sitemap`` lines), for the user agent ``Citewise/<version>``.

What an answer for robots.txt means follows RFC 9309: 2xx is the rules; 4xx means there are
none (everything may be fetched); 5xx or no answer means the site cannot say, so nothing may
be: the run fetches no page and removes none (``ingest.web.crawl``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protego import Protego

from citewise import __version__

USER_AGENT = f"Citewise/{__version__}"
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: at least 500 KiB must be read


@dataclass
class Robots:
    """The rules for one origin; ``Robots.everything()`` when the site has none."""

    parser: Protego | None = None
    sitemaps: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Robots:
        parser = Protego.parse(text)
        return cls(parser, list(parser.sitemaps))

    @classmethod
    def everything(cls) -> Robots:
        return cls()

    def allowed(self, url: str) -> bool:
        return self.parser is None or bool(self.parser.can_fetch(url, USER_AGENT))

    def delay(self) -> float:
        """The site's Crawl-delay for us, in seconds (0 when it gives none)."""
        if self.parser is None:
            return 0.0
        return float(self.parser.crawl_delay(USER_AGENT) or 0.0)
