"""Ingest benchmark on the FastAPI documentation (../shared/eval/fastapi_docs/docs).

Measures, in one run on one machine:
1. full ingest throughput (chunks/s) against the raw throughput of the same embedding model
   over the same chunk texts — the ceiling — as a ratio;
2. the same corpus through a naive LangChain pipeline (load, RecursiveCharacterTextSplitter,
   Chroma.from_documents, same model), as a ratio of wall-clock times;
3. a no-op re-ingest as a fraction of the full ingest;
4. a re-ingest after editing one file: chunks embedded;
5. the full ingest as shipped with the offline answerer: embeddings cached in Redis (an
   embedded one, fresh) and the answer units embedded too (``CITEWISE_INGEST_ANSWER_UNITS``),
   against the same raw model over the chunks and the units.

Run:  make bench   (or .venv/bin/python bench/ingest.py [--corpus DIR])
Writes bench/results/ingest.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its own name would shadow
# the ``ingest`` package; put the repository root there instead.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator

from citewise.answer.generators.extractive import comparable_units
from citewise.settings import Settings
from citewise.stored_chunk import Chunk
from citewise.wiring import build_embeddings, build_store
from ingest.discovery import discover
from ingest.parallel import ChunkingConfig, parse_all
from ingest.pipeline import IngestPipeline
from ingest.setup import open_pipeline

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "eval" / "fastapi_docs" / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="citewise-bench-"))
    try:
        corpus = work / "corpus"
        shutil.copytree(args.corpus, corpus)  # the edit step must not touch the shared copy
        settings = Settings(home=work / "home")
        embeddings = build_embeddings(settings)
        embeddings.load()
        pipeline = IngestPipeline(settings, build_store(settings), embeddings)

        full = pipeline.run([corpus], "bench")
        print(f"full ingest: {full.chunks_embedded} chunks in {full.seconds:.1f}s")

        texts = _embed_texts(corpus, settings)
        started = time.perf_counter()
        embeddings.embed_documents(texts)
        raw_seconds = time.perf_counter() - started
        print(f"raw embedding: {len(texts)} chunks in {raw_seconds:.1f}s")

        with open_pipeline(Settings(home=work / "with-units")) as shipped:
            with_units = shipped.run([corpus], "bench")
        units = _unit_texts(corpus, settings)
        started = time.perf_counter()
        embeddings.embed_documents(units)
        raw_units_seconds = time.perf_counter() - started
        print(
            f"with answer units: {with_units.chunks_embedded} chunks and "
            f"{with_units.answer_units_embedded} units in {with_units.seconds:.1f}s "
            f"(raw model on the units: {raw_units_seconds:.1f}s)"
        )

        noop = pipeline.run([corpus], "bench")
        edited = _edit_one_file(corpus)
        after_edit = pipeline.run([corpus], "bench")
        naive_seconds, naive_chunks = _naive_langchain(corpus, work / "naive", embeddings)
        print(f"naive LangChain: {naive_chunks} chunks in {naive_seconds:.1f}s")

        ingest_rate = full.chunks_embedded / full.seconds
        raw_rate = len(texts) / raw_seconds
        results = {
            "corpus": "fastapi_docs (155 Markdown pages)",
            "files": full.files_added,
            "failures": len(full.failures),
            "chunks": full.chunks_added,
            "full_ingest_seconds": round(full.seconds, 2),
            "full_ingest_chunks_per_s": round(ingest_rate, 2),
            "raw_embedding_chunks_per_s": round(raw_rate, 2),
            "ingest_vs_raw_embedding": round(ingest_rate / raw_rate, 3),
            "naive_langchain_seconds": round(naive_seconds, 2),
            "naive_langchain_chunks": naive_chunks,
            "naive_seconds_vs_citewise": round(naive_seconds / full.seconds, 3),
            "noop_reingest_seconds": round(noop.seconds, 3),
            "noop_vs_full": round(noop.seconds / full.seconds, 4),
            "noop_chunks_embedded": noop.chunks_embedded,
            "edited_file": edited,
            "edit_chunks_embedded": after_edit.chunks_embedded,
            "edit_chunks_unchanged": after_edit.chunks_unchanged,
            "edit_seconds": round(after_edit.seconds, 2),
            "with_answer_units": {
                "seconds": round(with_units.seconds, 2),
                "chunks_embedded": with_units.chunks_embedded,
                "answer_units_embedded": with_units.answer_units_embedded,
                "seconds_vs_without": round(with_units.seconds / full.seconds, 3),
                "raw_units_seconds": round(raw_units_seconds, 2),
                "ingest_vs_raw_embedding": round(
                    (raw_seconds + raw_units_seconds) / with_units.seconds, 3
                ),
            },
            "settings": {
                "chunk_tokens": settings.chunking.tokens,
                "chunk_overlap": settings.chunking.overlap,
                "parse_workers": settings.ingest.parse_workers,
            },
            "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _chunks(corpus: Path, settings: Settings) -> Iterator[Chunk]:
    """The chunks the ingest stored, produced again by the same parser and chunker."""
    config = ChunkingConfig(
        settings.chunking.tokens,
        settings.chunking.overlap,
        settings.chunking.encoding,
        settings.core.cache_dir,
    )
    for parsed in parse_all(discover([corpus]).files, config, settings.ingest.parse_workers):
        yield from parsed.chunks or []


def _embed_texts(corpus: Path, settings: Settings) -> list[str]:
    """The exact texts the ingest embedded, distinct."""
    return list({c.hash: c.embed_text for c in _chunks(corpus, settings)}.values())


def _unit_texts(corpus: Path, settings: Settings) -> list[str]:
    """The answer units the shipped ingest embeds beside the chunks, distinct."""
    chunks = _chunks(corpus, settings)
    return list(dict.fromkeys(unit for c in chunks for unit in comparable_units(c.text)))


def _edit_one_file(corpus: Path) -> str:
    target = corpus / "en" / "docs" / "tutorial" / "first-steps.md"
    if not target.exists():
        target = sorted(corpus.rglob("*.md"))[0]
    with target.open("a", encoding="utf-8") as handle:
        handle.write("\n\n## A section added by the benchmark\n\nOne new paragraph to embed.\n")
    return target.relative_to(corpus).as_posix()


def _naive_langchain(corpus: Path, directory: Path, embeddings: object) -> tuple[float, int]:
    """Load every Markdown file, split by characters, Chroma.from_documents: no incrementality."""
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import TextLoader
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    documents = []
    for path in sorted(corpus.rglob("*.md")):
        documents.extend(TextLoader(str(path), encoding="utf-8").load())
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=150).split_documents(
        documents
    )
    Chroma.from_documents(chunks, embeddings, persist_directory=str(directory))  # type: ignore[arg-type]
    return time.perf_counter() - started, len(chunks)


if __name__ == "__main__":
    main()
