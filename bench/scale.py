"""Citewise at 10,000, 100,000 and 1,000,000 chunks, in the embedded store and a Chroma server.

For each size (``--sizes 10k,100k,1M``) and store (``--stores embedded,server``):

1. builds the knowledge base (``bench/scale_corpus.py``): at 10k the real one, FastAPI docs +
   SciFact through the real ingest (its peak resident memory is the worker's figure); above
   the real base, chunks derived from the real ones (real words, vectors blended from real
   vectors: see that module). At 10k the derived recipe is measured too, from a base of
   1,000 real chunks (the same 1:10 as at 100k), to show it does not change the figures.
   The server store is ``chroma run`` as a plain process holding the same chunks and vectors.
   BM25: build, rebuild after 1% of the chunks changed, load (bench/lexical.py's timings).
2. starts the service as it ships (``bench/serve.py``'s ``start_service``: extractive
   answers, the local model, answer cache on a fresh Redis prefix) and times its start: until
   ``/readyz`` answers, and until a first search is answered (BM25 loaded, the vector index
   opened);
3. drives it over HTTP with real text, each text sent once (SciFact claims, FastAPI
   questions; ``bench/answer_latency.py``'s plan): ``/v1/search`` and ``/v1/ask`` (cache
   misses) at concurrency 1 and 8 (one keep-alive connection per client), answer-cache hits,
   and the search beside its raw limit in alternating blocks (a new text embedded, then a
   Chroma query of the service's depth with the passages' text, in this process);
4. reads the API process's resident memory after start and after 1,000 searches, the Chroma
   server's, and the size on disk;
5. restarts the service with the ``openai`` provider pointed at a local stub (tests/llm_stubs)
   and times the first byte of ``/v1/ask/stream``: it carries the sources, which are sent
   before the model is asked, so it is all Citewise adds before the model.

Run:  .venv/bin/python bench/scale.py --redis-url URL [--sizes 10k,100k] [--stores ...]
      [--work DIR [--build-only]]   Writes bench/results/scale.json.
10k and 100k take about 45 minutes on 2 cores the first time: the real ingest embeds for about
8 minutes (its vectors then stay in Redis under ``citewise-bench-latency`` and later runs embed
nothing), writing the 100k stores takes about 10, measuring the five knowledge bases about 25.
1M takes about 70 minutes more to build per store (measured on the embedded one: 44 minutes
writing, 22 publishing BM25): build it first, niced, with ``--work DIR --build-only``,
then measure with the same ``--work DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Any

from bench import scale_corpus, scale_measure
from bench.answer_latency import delete_keys, git_commit
from bench.chroma_server import start_chroma
from bench.serve import server_env

HERE = Path(__file__).resolve().parent
KB = "default"
SEED = 18
COMPARE_BASE = 1000  # the derived 10k's real base: 1:10, as at 100k
TARGETS = {  # (size, figure): limit
    (100_000, "search_p50_ms"): 15.0,
    (100_000, "search_vs_raw"): 1.5,
    (100_000, "api_rss_mb"): 600.0,
    (100_000, "first_sse_byte_ms"): 30.0,
    (1_000_000, "search_p50_ms"): 50.0,
    (1_000_000, "start_s"): 30.0,
}


def size_of(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


class Builder:
    """The knowledge bases of one run, under ``work`` (reused when ``work`` has them)."""

    def __init__(self, work: Path, redis_url: str, real_chunks: int) -> None:
        self.work = work
        self.redis_url = redis_url
        self.real_chunks = real_chunks
        self.pool: scale_corpus.Pool | None = None
        self.worker_peak_rss_mb: float | None = None  # of the real ingest, if this run made it

    def env(self, home: Path) -> dict[str, str]:
        env = server_env(home, self.redis_url)
        return env | {"CITEWISE_ENV_FILE": "off", "CITEWISE_REDIS_PREFIX": "bench-scale-build"}

    def settings(self, home: Path, chroma_url: str | None = None) -> Any:
        from citewise.settings import Settings

        return Settings(home=home, redis_url="off", chroma_url=chroma_url)

    def real(self) -> dict[str, Any]:
        """The real knowledge base (embedded), ingested once per ``work``."""
        home = self.work / "real" / "home"
        record = self.work / "real" / "built.json"
        if not record.exists():
            print(f"ingesting about {self.real_chunks:,} real chunks ...", file=sys.stderr)
            shutil.rmtree(home, ignore_errors=True)
            built = scale_corpus.ingest_real(home, self.env(home), self.redis_url, self.real_chunks)
            record.write_text(json.dumps(built), encoding="utf-8")
            self.worker_peak_rss_mb = built["worker_peak_rss_mb"]
        return {"home": home, **json.loads(record.read_text(encoding="utf-8"))}

    def base(self, size: int) -> scale_corpus.Pool:
        if self.pool is None:
            self.pool = scale_corpus.read_pool(self.settings(self.real()["home"]), KB)
        return scale_corpus.base_of(self.pool, size, SEED)

    def derived(self, name: str, size: int, base: int, chroma_url: str | None) -> dict[str, Any]:
        """``size`` chunks from a real base of ``base`` into the store named (server or not)."""
        folder = self.work / name
        record = folder / "built.json"
        if not record.exists():
            print(f"building {name} ({size:,} chunks) ...", file=sys.stderr)
            shutil.rmtree(folder / "home", ignore_errors=True)
            settings = self.settings(folder / "home", chroma_url)
            built = scale_corpus.load(settings, KB, self.base(base), size, SEED)
            record.write_text(json.dumps(built), encoding="utf-8")
        return {"home": folder / "home", **json.loads(record.read_text(encoding="utf-8"))}


class Chroma:
    """``chroma run`` with its data in ``folder`` (kept), while in the ``with`` block."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Chroma:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process, self.url = start_chroma(self.folder)
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)


def variants(sizes: list[int], stores: list[str], real_chunks: int) -> list[dict[str, Any]]:
    """What to build and measure: (name, size, store, vectors, base)."""
    plan = []
    for size in sizes:
        for store in stores:
            vectors = "real" if size <= real_chunks else "derived"
            base = size if vectors == "real" else real_chunks
            plan.append({"name": f"{label(size)}-{store}", "size": size, "store": store,
                         "vectors": vectors, "base": base})  # fmt: skip
        if size <= real_chunks and "embedded" in stores:
            plan.append({"name": f"{label(size)}-embedded-derived", "size": size,
                         "store": "embedded", "vectors": "derived",
                         "base": min(COMPARE_BASE, size // 10)})  # fmt: skip
    return plan


def build(builder: Builder, variant: dict[str, Any]) -> dict[str, Any]:
    """Build one variant (a Chroma server variant while its server runs): its record."""
    name, size = variant["name"], variant["size"]
    if variant["store"] == "embedded" and variant["vectors"] == "real":
        real = builder.real()
        return {**real, "chunks": real["chunks"], "real_chunks": real["chunks"]}
    if variant["store"] == "embedded":
        return builder.derived(name, size, variant["base"], None)
    with Chroma(builder.work / name / "chroma") as chroma:
        return builder.derived(name, size, variant["base"], chroma.url)


def measure_variant(
    builder: Builder, variant: dict[str, Any], built: dict[str, Any]
) -> dict[str, Any]:
    home = Path(built["home"])
    settings = builder.settings(home)
    prefix = f"bench-scale-{os.getpid()}-{variant['name']}"
    env = server_env(home, builder.redis_url) | {
        "CITEWISE_ENV_FILE": "off",
        "CITEWISE_REDIS_PREFIX": prefix,
    }
    result: dict[str, Any] = {**variant, "built": {k: v for k, v in built.items() if k != "home"}}
    chroma: Chroma | None = None
    try:
        if variant["store"] == "server":
            chroma = Chroma(builder.work / variant["name"] / "chroma").__enter__()
            env["CITEWISE_CHROMA_URL"] = chroma.url
            settings = builder.settings(home, chroma.url)
        result["bm25"] = scale_measure.bm25_timings(settings, KB)
        result |= scale_measure.serve(env, settings, KB, chroma.process if chroma else None)
        result["first_sse_byte"] = scale_measure.first_sse_byte(env)
        disk = home if chroma is None else home.parent
        result["disk_mb"] = round(scale_measure.folder_bytes(disk) / 2**20, 1)
    finally:
        if chroma is not None:
            chroma.__exit__()
        delete_keys(builder.redis_url, [f"{prefix}:*"])
    return result


def verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for row in results:
        if row["name"].endswith("-derived"):
            continue  # the comparison run, not a target
        figures = {
            "search_p50_ms": row["search"]["c1"]["p50_ms"],
            "search_vs_raw": row["search_vs_raw"]["ratio"],
            "api_rss_mb": row["rss_mb"]["after_1000_searches"],
            "first_sse_byte_ms": row["first_sse_byte"]["p50_ms"],
            "start_s": row["start_s"]["first_search"],
        }
        for (size, figure), limit in TARGETS.items():
            if row["size"] == size:
                value = figures[figure]
                found.append({"variant": row["name"], "figure": figure, "target": limit,
                              "result": value, "met": value <= limit})  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True, help="a Redis server (embedding cache)")
    parser.add_argument("--sizes", default="10k,100k", help="e.g. 10k,100k,1M")
    parser.add_argument("--stores", default="embedded,server")
    parser.add_argument("--real-chunks", type=int, default=10_000, help="the real base")
    parser.add_argument("--work", type=Path, help="keep the knowledge bases here (reused)")
    parser.add_argument("--build-only", action="store_true", help="build, do not measure")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.json")
    args = parser.parse_args()
    sizes = [size_of(s) for s in args.sizes.split(",") if s.strip()]
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    work = args.work or Path(tempfile.mkdtemp(prefix="citewise-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    builder = Builder(work, args.redis_url, args.real_chunks)
    results = []
    try:
        for variant in variants(sizes, stores, args.real_chunks):
            built = build(builder, variant)
            if args.build_only:
                continue
            print(f"measuring {variant['name']} ...", file=sys.stderr)
            row = measure_variant(builder, variant, built)
            results.append(row)
            print(scale_measure.row_line(row), file=sys.stderr)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.build_only:
        return
    report = {
        "results": results,
        "worker_ingest_peak_rss_mb": builder.worker_peak_rss_mb,
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if report["worker_ingest_peak_rss_mb"] is None:  # the real base was not ingested this run
        report["worker_ingest_peak_rss_mb"] = previous.get("worker_ingest_peak_rss_mb")
    keep = [r for r in previous.get("results", []) if r["name"] not in {r["name"] for r in results}]
    report["results"] = keep + results
    report["targets"] = verdicts(report["results"])
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["targets"], indent=2))


if __name__ == "__main__":
    main()
