"""Web sources: how fast a first ingest of a site goes, and what a no-op re-ingest costs.

The test suite's fixture site (tests/web_site.py: navigation, cookie banner and footer on every
page, ETags, a sitemap) is scaled to ``--pages`` generated pages (1,000 by default), each a
title and three sections of made-up prose, and served on 127.0.0.1. Then:

1. a first ingest of ``/docs/`` into a fresh home (sitemap, fetch, main content, chunks, embed);
2. a re-ingest with nothing changed: every page asked for conditionally, answered 304,
   nothing parsed, nothing embedded;
3. a re-ingest after one page changed.

The politeness delay is 0 (``CITEWISE_WEB_DELAY_S``): the figures are the pipeline's, not a
sleep's; with the default 0.25 s a first crawl of 1,000 pages takes at least 250 s whatever
else. Redis is off (no embedding cache), one parse worker, as shipped.

Run:  .venv/bin/python bench/web_crawl.py [--pages 1000]
Writes bench/results/web_crawl.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import random
import tempfile
import time
from typing import Any

from citewise.offline import prepare_offline
from citewise.settings import Settings
from citewise.wiring import build_embeddings, build_store
from ingest.pipeline import IngestPipeline
from ingest.web.crawl import Site
from tests.web_site import Site as FixtureSite
from tests.web_site import page, serving

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "web_crawl.json"
WORDS = (  # noqa: SIM905 - a paragraph of words reads better than a list
    "account workspace receipt invoice refund policy export import report approval manager "
    "budget currency mileage travel hotel limit card merchant category project client team "
    "owner member invitation password login audit archive schedule reminder mobile camera "
    "scan upload folder setting permission role plan monthly annual tax rate total"
).split()


def prose(rng: random.Random, sentences: int) -> str:
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(9, 16))).capitalize() + "."
        for _ in range(sentences)
    )


def generated(count: int) -> dict[str, str]:
    rng = random.Random(7)
    pages = {"/docs/": page("Index", "<h1>Index</h1><p>" + prose(rng, 3) + "</p>")}
    for n in range(1, count):
        sections = "".join(
            f"<h2 id='part-{k}'>Part {k}</h2><p>{prose(rng, 4)}</p>" for k in range(1, 4)
        )
        body = f"<h1 id='topic-{n}'>Topic {n}</h1><p>{prose(rng, 2)}</p>{sections}"
        pages[f"/docs/topic-{n}"] = page(f"Topic {n}", body)
    return pages


def run(pipeline: IngestPipeline, site: Site) -> dict[str, Any]:
    started = time.perf_counter()
    report = pipeline.run_web(site, "web")
    seconds = time.perf_counter() - started
    web = report.web or {}
    return {
        "seconds": round(seconds, 2),
        "pages": report.files_seen,
        "pages_per_s": round(report.files_seen / seconds, 1),
        "seconds_fetching": web.get("seconds_fetching"),
        "pages_fetched_per_s": round(report.files_seen / web["seconds_fetching"], 1),
        "requests": web.get("requests"),
        "answered_304": web.get("not_modified"),
        "added": report.files_added,
        "changed": report.files_changed,
        "unchanged": report.files_unchanged,
        "failed": report.files_failed,
        "chunks_embedded": report.chunks_embedded,
        "bytes_downloaded": web.get("bytes_downloaded"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    args = parser.parse_args()
    pages = generated(args.pages)
    fixture = FixtureSite(
        pages=pages, sitemapped=list(pages), lastmod={}, redirects={}, failing=set()
    )
    with tempfile.TemporaryDirectory() as home, serving(fixture) as served:
        settings = Settings(
            home=Path(home) / "home",
            cache_dir=Path(home) / "cache",
            redis_url="off",
            web_delay_s=0,
            web_max_pages=args.pages,
        )
        prepare_offline(settings.core.cache_dir)
        store = build_store(settings)
        pipeline = IngestPipeline(settings, store, build_embeddings(settings))
        site = Site(served.base + "/docs/")
        first = run(pipeline, site)
        print("first ingest", first, flush=True)
        noop = run(pipeline, site)
        print("no-op re-ingest", noop, flush=True)
        served.pages["/docs/topic-1"] = served.pages["/docs/topic-1"].replace(
            "Part 2</h2><p>", "Part 2</h2><p>A sentence added to one section. "
        )
        one = run(pipeline, site)
        print("one page changed", one, flush=True)
        store.close()
    results = {
        "site": f"{args.pages} generated pages (tests/web_site.py layout), served on 127.0.0.1",
        "settings": {"web_delay_s": 0, "web_concurrency": 4, "parse_workers": 1, "redis": "off"},
        "first_ingest": first,
        "noop_reingest": noop,
        "one_page_changed": one,
        "noop_share_of_first": round(noop["seconds"] / first["seconds"], 4),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
