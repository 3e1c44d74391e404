"""Ingest: files -> parsed -> chunks -> vectors in Chroma, paying only for what changed.

For each knowledge base the pipeline
1. skips files whose bytes hash as the manifest recorded (before parsing them);
2. re-chunks changed files and diffs their chunk ids against what Chroma holds: kept chunks
   keep their vectors (metadata is refreshed), new chunks reuse any stored vector with the
   same content hash (a moved file embeds nothing) and only the rest are embedded;
3. deletes the chunks of files gone from an ingested root, after additions, so renames reuse.

Vectors not stored in this knowledge base come from the Redis embedding cache when the
embeddings passed in have one (``CachedEmbeddings``): a fresh store or another knowledge base
with the same passages embeds nothing twice (``embed_cache_hits`` in the report).

Why not LangChain's ``index()`` with a record manager: it hashes text *and* metadata, so an
edit near the top of a file changes every later chunk's offsets and re-embeds them all; it
cannot skip a file before parsing it, plan a dry run, or reuse vectors across a rename.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from langchain_core.embeddings import Embeddings

from citewise import metrics
from citewise.errors import DocumentError
from citewise.knowledge_base import validate_kb
from citewise.search.embedding_cache import CachedEmbeddings
from citewise.search.lexical import LexicalStore
from citewise.search.store import ChunkStore, KnowledgeBase
from citewise.settings import Settings
from citewise.stored_chunk import Chunk
from citewise.wiring import build_lexical
from ingest.answer_units import answer_unit_cache, embed_answer_units
from ingest.chunking import Chunker
from ingest.discovery import Discovery, SourceFile, discover, printable
from ingest.document import ParsedDocument
from ingest.guards import ParseLimits
from ingest.locks import kb_lock
from ingest.manifest import DONE, PENDING, FileRecord, Manifest
from ingest.opening import hash_beneath
from ingest.parallel import ChunkingConfig, Item, ParseBudget, Parsed, parse_all
from ingest.removal import finish_interrupted
from ingest.report import IngestReport
from ingest.sources import Placed, place, with_web_source
from ingest.web.crawl import Site, read_site
from ingest.web.settle import report_pages, settle

# Bump when parsing or chunking changes output for the same settings: forces a re-chunk.
PIPELINE_VERSION = "1"
FLUSH_EVERY = 1024  # chunks to embed per write: big enough to length-sort well, memory flat


class Progress(Protocol):
    """Where the pipeline reports progress; the CLI draws it with rich."""

    def start(self, total: int) -> None: ...
    def advance(self, description: str) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, description: str) -> None:
        pass


@dataclass(frozen=True)
class Todo:
    """A file or web page to parse: its hash and size when classified, and whether it is new."""

    file: Item
    file_hash: str
    is_new: bool
    size: int = 0


class Ledger(Protocol):
    """Where a file's state is recorded around its changes in Chroma: the manifest, or, for
    a shard, the shard's result that the job's coordinator writes there (``ingest.sharding``)."""

    def pending(self, todo: Todo, file_hash: str) -> None: ...
    def done(self, todo: Todo, file_hash: str, chunks: int, size: int | None) -> None: ...


class _ManifestLedger:
    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest

    def pending(self, todo: Todo, file_hash: str) -> None:
        self._manifest.mark(todo.file.source, str(todo.file.root), file_hash, PENDING)

    def done(self, todo: Todo, file_hash: str, chunks: int, size: int | None) -> None:
        self._manifest.mark(todo.file.source, str(todo.file.root), file_hash, DONE, chunks, size)


class Sharder(Protocol):
    """Stores a job's files across workers (``ingest.sharding``); False when there are too
    few of them to share, and this process stores them as it always has."""

    def store(
        self, todo: list[Todo], target: KnowledgeBase, manifest: Manifest, report: IngestReport
    ) -> bool: ...


@dataclass
class _FileWork:
    todo: Todo
    file: Item
    file_hash: str  # of the bytes that were parsed
    size: int | None
    chunks: list[Chunk]
    to_add: list[Chunk]
    to_refresh: list[Chunk]
    to_delete: list[str]


@dataclass
class _Batch:
    work: list[_FileWork] = field(default_factory=list)
    pending_embeddings: int = 0


class IngestPipeline:
    """Runs ingests for one Citewise home. Build once, call ``run`` per ingest.

    Takes the whole ``Settings``: an ingest reads most groups (paths under the home, chunking,
    the embedding model, limits, ingest) and the quality gate runs a ``Retriever`` too.
    """

    def __init__(
        self,
        settings: Settings,
        store: ChunkStore,
        embeddings: Embeddings,
        lexical: LexicalStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embeddings = embeddings
        self.lexical = lexical or build_lexical(settings)
        self._answer_unit_cache = answer_unit_cache(settings, embeddings)
        self.emptied: list[str] = []  # of the last run: documents that had text, have none
        self._chunking = ChunkingConfig(
            settings.chunking.tokens,
            settings.chunking.overlap,
            settings.chunking.encoding,
            settings.core.cache_dir,
        )

    def fingerprint(self) -> str:
        s = self.settings
        return (
            f"v{PIPELINE_VERSION}|{s.embedding.model}|{s.chunking.encoding}|"
            f"{s.chunking.tokens}|{s.chunking.overlap}"
        )

    def run(
        self,
        paths: Sequence[Path],
        kb: str,
        *,
        dry_run: bool = False,
        rebuild: bool = False,
        progress: Progress | None = None,
        internal: bool = False,
        confine: Path | None = None,
        sharder: Sharder | None = None,
    ) -> IngestReport:
        """Bring knowledge base ``kb`` in line with the files under ``paths`` (``internal``:
        ``kb`` may be a staging name, see ``ingest.gate``; ``confine``: a folder no read may
        leave, see ``ingest.opening``; ``sharder``: may share the files out to other workers,
        see ``ingest.sharding``)."""
        validate_kb(kb, internal=internal)
        started = time.perf_counter()
        found = discover(list(paths), confine)
        report = IngestReport(kb=kb, dry_run=dry_run)
        report.files_seen = len(found.files) + len(found.skipped) + len(found.refused)
        for path in found.skipped:
            report.skip(path, f"not a supported type ({Path(path).suffix or 'no suffix'})")
        self.emptied = []
        if dry_run:
            self._plan(found, kb, rebuild, report, progress or _Silent())
        else:
            with self._writing(kb, keep=paths):
                self._apply(found, kb, rebuild, report, progress or _Silent(), sharder)
        report.seconds = time.perf_counter() - started
        if not dry_run:
            _record(report)
        return report

    def run_web(
        self,
        site: Site,
        kb: str,
        *,
        dry_run: bool = False,
        rebuild: bool = False,
        progress: Progress | None = None,
        internal: bool = False,
    ) -> IngestReport:
        """Bring knowledge base ``kb`` in line with the web source ``site``: fetch what changed
        (``ingest.web.crawl``), store it like files, and remove pages gone long enough
        (``ingest.web.settle``)."""
        validate_kb(kb, internal=internal)
        site.scope  # noqa: B018 - an address that is no URL is refused before anything runs
        started = time.perf_counter()
        report = IngestReport(kb=kb, dry_run=dry_run)
        self.emptied = []
        if dry_run:
            self._web(site, kb, rebuild, report, progress or _Silent(), write=False)
        else:
            with self._writing(kb):
                self._web(site, kb, rebuild, report, progress or _Silent(), write=True)
        report.seconds = time.perf_counter() - started
        if not dry_run:
            _record(report)
        return report

    @contextmanager
    def _writing(self, kb: str, keep: Sequence[Path] = ()) -> Iterator[None]:
        """Hold knowledge base ``kb``'s lock for an ingest. A delete of it (or of documents of
        it) cut short is finished first: nothing of what was being deleted is taken as stored
        (``keep``: the paths this ingest brings back)."""
        busy = (
            f"another ingest or delete of knowledge base {kb!r} is running; "
            "try again when it has finished"
        )
        with kb_lock(self.settings, kb, busy):
            finish_interrupted(self.settings, self.store, self.lexical, kb, keep=keep)
            yield

    def add_documents(
        self,
        kb: str,
        documents: Iterable[tuple[str, ParsedDocument, dict[str, Any]]],
        progress: Progress | None = None,
        total: int = 0,
    ) -> int:
        """Chunk, embed and store already-parsed documents as ``(source, document, extra)``.

        For corpora that arrive as records rather than files (``citewise eval`` loads BEIR
        and SQuAD sets this way); ``extra`` becomes metadata on every chunk. Returns the
        number of chunks stored.
        """
        validate_kb(kb)
        progress = progress or _Silent()
        progress.start(total)
        knowledge_base = self.store.knowledge_base(kb, create=True)
        chunker = Chunker(
            self.settings.chunking.tokens,
            self.settings.chunking.overlap,
            self.settings.chunking.encoding,
        )
        pending: list[Chunk] = []
        stored = 0
        for source, document, extra in documents:
            pending.extend(chunker.chunk(document, source, extra))
            progress.advance(source)
            if len(pending) >= FLUSH_EVERY:
                stored += self._store_new(knowledge_base, pending)
                pending = []
        stored += self._store_new(knowledge_base, pending)
        self._refresh_lexical(knowledge_base)
        return stored

    def _store_new(self, knowledge_base: KnowledgeBase, chunks: list[Chunk]) -> int:
        if chunks:
            vectors, _ = self._embed([c.embed_text for c in chunks])
            if self._answer_unit_cache is not None:
                embed_answer_units(self._answer_unit_cache, (c.text for c in chunks))
            knowledge_base.upsert(chunks, vectors)
        return len(chunks)

    def _embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors for ``texts`` and how many came from the embedding cache."""
        if isinstance(self.embeddings, CachedEmbeddings):
            return self.embeddings.embed_documents_counted(texts)
        return self.embeddings.embed_documents(texts), 0

    # --- planning and applying share one walk over the files --------------------------

    def _plan(
        self, found: Discovery, kb: str, rebuild: bool, report: IngestReport, progress: Progress
    ) -> None:
        self.store.follow(kb, self.lexical.current_generation(kb))
        with Manifest.open(self.settings.manifest_path, kb, read_only=True) as manifest:
            rebuild = rebuild or manifest.deleting()  # the ingest would finish that delete first
            existing = None
            if not rebuild and self.store.exists(kb):
                existing = self.store.knowledge_base(kb)
            records = {} if rebuild else manifest.records()
            placed = _placed(found, manifest, records, report)
            stale = rebuild or manifest.fingerprint() != self.fingerprint()
            todo = self._classify(placed.files, records, stale, report)
            self._plan_parsed(todo, existing, report, progress)
            for source in _deleted(placed, records):
                report.delete(source)
                report.chunks_deleted += records[source].chunk_count
            for source in self.emptied:
                report.chunks_deleted += records[source].chunk_count

    def _plan_parsed(
        self,
        todo: list[Todo],
        existing: KnowledgeBase | None,
        report: IngestReport,
        progress: Progress,
    ) -> None:
        """Count what storing ``todo`` would do, writing nothing."""
        progress.start(len(todo))
        for item, parsed in self._parsed(todo, report, progress, self.emptied):
            work = _diff(parsed, existing, item)
            hashes = {c.hash for c in work.to_add}
            reusable = set(existing.vectors_by_hash(list(hashes))) if existing else set()
            texts = {c.hash: c.embed_text for c in work.to_add if c.hash not in reusable}
            cached = 0
            if isinstance(self.embeddings, CachedEmbeddings):
                cached = self.embeddings.cached_count(list(texts.values()))
            _count(report, work, embedded=len(texts) - cached)
            report.embed_cache_hits += cached
            report.chunks_reused += sum(1 for c in work.to_add if c.hash in reusable)

    def _apply(
        self,
        found: Discovery,
        kb: str,
        rebuild: bool,
        report: IngestReport,
        progress: Progress,
        sharder: Sharder | None,
    ) -> None:
        # A long-lived pipeline (--watch, a worker) reads what other processes wrote meanwhile.
        self.store.follow(kb, self.lexical.current_generation(kb))
        if rebuild:
            self.store.drop(kb)
        knowledge_base = self.store.knowledge_base(kb, create=True)
        with Manifest.open(self.settings.manifest_path, kb) as manifest:
            if rebuild:
                manifest.forget_all()
            records = manifest.records()
            placed = _placed(found, manifest, records, report)
            manifest.register(manifest.sources() + placed.new_sources)
            stale = manifest.fingerprint() != self.fingerprint()
            todo = self._classify(placed.files, records, stale, report)
            progress.start(len(todo))
            if sharder is None or not sharder.store(todo, knowledge_base, manifest, report):
                ledger = _ManifestLedger(manifest)
                self.store_files(todo, knowledge_base, ledger, report, progress, self.emptied)
            for source in _deleted(placed, records):
                report.chunks_deleted += knowledge_base.delete_source(source)
                report.delete(source)
                manifest.forget(source)
            for source in self.emptied:  # skipped now, so its old text must not answer
                report.chunks_deleted += knowledge_base.delete_source(source)
                manifest.forget(source)
            _note_failures(manifest, placed, report)
            manifest.set_fingerprint(self.fingerprint())
        # Last, so a crash before it leaves a stale index that the next run notices and rebuilds.
        self._refresh_lexical(knowledge_base)

    def _web(
        self,
        site: Site,
        kb: str,
        rebuild: bool,
        report: IngestReport,
        progress: Progress,
        *,
        write: bool,
    ) -> None:
        """One ingest of a web source, or (``write=False``) its plan: the requests are made
        either way, as only the site can say what changed."""
        self.store.follow(kb, self.lexical.current_generation(kb))
        if write and rebuild:
            self.store.drop(kb)
        existing = None
        if write:
            existing = self.store.knowledge_base(kb, create=True)
        elif not rebuild and self.store.exists(kb):
            existing = self.store.knowledge_base(kb)
        root = site.scope.root
        with (
            Manifest.open(self.settings.manifest_path, kb, read_only=not write) as manifest,
            tempfile.TemporaryDirectory(prefix="citewise-web-") as spool,
        ):
            if write and rebuild:
                manifest.forget_all()
            rebuild = rebuild or (not write and manifest.deleting())
            records = {} if rebuild else manifest.records()
            sources = with_web_source(manifest.sources(), root, set(records))  # or refused
            if write:
                manifest.register(sources)
            stale = rebuild or manifest.fingerprint() != self.fingerprint()
            known = {} if rebuild else manifest.web_pages(root)
            crawl = read_site(
                site, self.settings, known, records, Path(spool), stale, report,
                progress.start, progress.advance,
            )  # fmt: skip
            plan = settle(crawl, root, records, self.settings.ingest.web_misses)
            report_pages(report, crawl, plan, records)
            todo = [Todo(page, "", is_new=page.source not in records) for page in plan.todo]
            if not write:
                self._plan_parsed(todo, existing, report, progress)
                for source in plan.removed:
                    report.delete(source)
                for source in [*plan.removed, *self.emptied]:
                    report.chunks_deleted += records[source].chunk_count
                return
            assert existing is not None
            progress.start(len(todo))
            ledger = _ManifestLedger(manifest)
            stored = self.store_files(todo, existing, ledger, report, progress, self.emptied)
            for source in plan.removed:
                report.chunks_deleted += existing.delete_source(source)
                report.delete(source)
                manifest.forget(source)
            for source in self.emptied:
                report.chunks_deleted += existing.delete_source(source)
                manifest.forget(source)
            for source, misses in plan.misses.items():
                manifest.set_misses(source, misses)
            fetched = [record for source in sorted(stored) for record in plan.records[source]]
            manifest.save_web_pages(plan.kept + fetched, plan.gone_urls)
            failed = {f.path: (root, f.error) for f in report.failures}
            earlier = {k for k, f in manifest.failures().items() if f.root == root}
            manifest.note_failures(failed, plan.confirmed | (earlier if crawl.complete else set()))
            manifest.set_fingerprint(self.fingerprint())
        self._refresh_lexical(existing)

    def store_files(
        self,
        todo: list[Todo],
        knowledge_base: KnowledgeBase,
        ledger: Ledger,
        report: IngestReport,
        progress: Progress,
        emptied: list[str],
    ) -> set[str]:
        """Parse, diff, embed and store these files (their deletions and the BM25 index are
        the caller's); ``emptied`` gets the documents that have no text any more. Returns the
        documents stored."""
        stored: set[str] = set()
        batch = _Batch()
        for item, parsed in self._parsed(todo, report, progress, emptied):
            work = _diff(parsed, knowledge_base, item)
            # Recorded before Chroma changes: a crash from here on is redone next run.
            ledger.pending(work.todo, work.file_hash)
            batch.work.append(work)
            batch.pending_embeddings += len(work.to_add)
            stored.add(work.file.source)
            if batch.pending_embeddings >= FLUSH_EVERY:
                self._flush(batch, knowledge_base, ledger, report)
                batch = _Batch()
        self._flush(batch, knowledge_base, ledger, report)
        return stored

    def _refresh_lexical(self, knowledge_base: KnowledgeBase) -> None:
        publish_lexical(self.store, self.lexical, knowledge_base)

    def _classify(
        self, files: list[SourceFile], records: dict[str, Any], stale: bool, report: IngestReport
    ) -> list[Todo]:
        """Hash every file; return those that need parsing, counting the unchanged."""
        limit = int(self.settings.limits.max_file_mb * 1024 * 1024)
        todo: list[Todo] = []
        claimed: set[str] = set()
        for file in files:
            if file.source in claimed:
                report.fail(file.source, "another ingested folder has a file at the same path")
                continue
            claimed.add(file.source)
            owner = records.get(file.source)
            if owner is not None and owner.root != str(file.root):
                # Never replace another source's document: say so and keep both files.
                report.fail(
                    file.source,
                    f"a document with this path was ingested from another folder "
                    f"({Path(owner.root).name}); it is kept and this file was not ingested",
                )
                continue
            try:  # opened beneath its folder, never through a link leading out
                file_hash, size = hash_beneath(file.anchor, file.path, limit)
            except DocumentError as exc:
                report.fail(file.source, str(exc))
                continue
            if size == 0:
                report.fail(file.source, "empty file")
                continue
            record = records.get(file.source)
            if (
                not stale
                and record is not None
                and record.status == DONE
                and record.file_hash == file_hash
            ):
                report.files_unchanged += 1
                report.chunks_unchanged += record.chunk_count
                continue
            todo.append(Todo(file, file_hash, is_new=record is None, size=size))
        return todo

    def _parsed(
        self, todo: list[Todo], report: IngestReport, progress: Progress, emptied: list[str]
    ) -> Iterator[tuple[Todo, Parsed]]:
        """Parsed files that succeeded, counted as added or changed; failures reported.

        Each is read once, in its parse worker, and its hash is that of the bytes parsed: if
        the file changed since ``_classify`` hashed it, what is recorded is what was read."""
        by_source = {t.file.source: t for t in todo}
        for parsed in parse_all(
            [t.file for t in todo],
            self._chunking,
            self.settings.ingest.parse_workers,
            ParseLimits.from_settings(self.settings.limits),
            ParseBudget.from_settings(self.settings.limits),
        ):
            progress.advance(parsed.file.source)
            item = by_source[parsed.file.source]
            if parsed.empty:
                report.skip(parsed.file.source, parsed.error or "no text to index")
                if not item.is_new:
                    emptied.append(parsed.file.source)
                continue
            if parsed.chunks is None:
                report.fail(parsed.file.source, parsed.error or "could not be parsed")
                continue
            if item.is_new:
                report.files_added += 1
                report.added.append(parsed.file.source)
            else:
                report.files_changed += 1
                report.changed.append(parsed.file.source)
            yield item, parsed

    def _flush(
        self, batch: _Batch, kb: KnowledgeBase, ledger: Ledger, report: IngestReport
    ) -> None:
        needed = [c for w in batch.work for c in w.to_add]
        vectors = kb.vectors_by_hash([c.hash for c in needed]) if needed else {}
        reused = set(vectors)
        missing = {c.hash: c.embed_text for c in needed if c.hash not in vectors}
        cache_hits = 0
        if missing:
            computed, cache_hits = self._embed(list(missing.values()))
            vectors.update(zip(missing, computed, strict=True))
        if needed and self._answer_unit_cache is not None:
            report.answer_units_embedded += embed_answer_units(
                self._answer_unit_cache, {c.hash: c.text for c in needed}.values()
            )
        for work in batch.work:
            kb.upsert(work.to_add, [vectors[c.hash] for c in work.to_add])
            kb.update_metadata(work.to_refresh)
            kb.delete(work.to_delete)
            ledger.done(work.todo, work.file_hash, len(work.chunks), work.size)
            _count(report, work, embedded=0)
        report.chunks_embedded += len(missing) - cache_hits
        report.embed_cache_hits += cache_hits
        report.chunks_reused += sum(1 for c in needed if c.hash in reused)


def publish_lexical(store: ChunkStore, lexical: LexicalStore, knowledge_base: KnowledgeBase) -> str:
    """Publish the BM25 index of what ``knowledge_base`` holds now (a new corpus version when
    that changed) and record its generation in the store; returns the generation."""
    ids, metadatas = knowledge_base.ids_and_metadatas()
    generation = lexical.generation_of(ids, metadatas)
    if lexical.current_generation(knowledge_base.kb) != generation:
        lexical.rebuild(knowledge_base.kb, ids, metadatas, knowledge_base.texts_of)
    # Then in Chroma, for serving processes that cannot read this CITEWISE_HOME (replicas
    # of a Chroma server): they rebuild their copies when it changes. Recorded even when
    # the local index was already right, so a crash between the two steps heals.
    knowledge_base.record_generation(generation)
    store.follow(knowledge_base.kb, generation)  # this process's own view is current
    return generation


def _diff(parsed: Parsed, kb: KnowledgeBase | None, todo: Todo) -> _FileWork:
    file, chunks = parsed.file, parsed.chunks or []
    assert parsed.file_hash is not None  # set on every file that parsed
    stored = kb.chunks_of_source(file.source) if kb is not None else {}
    wanted = {c.id for c in chunks}
    to_add = [c for c in chunks if c.id not in stored]
    to_refresh = [c for c in chunks if c.id in stored and stored[c.id] != c.metadata]
    to_delete = [i for i in stored if i not in wanted]
    return _FileWork(
        todo, file, parsed.file_hash, parsed.size, chunks, to_add, to_refresh, to_delete
    )


def _count(report: IngestReport, work: _FileWork, *, embedded: int) -> None:
    report.chunks_added += len(work.to_add)
    report.chunks_deleted += len(work.to_delete)
    report.chunks_unchanged += len(work.chunks) - len(work.to_add)
    report.chunks_embedded += embedded


def _placed(
    found: Discovery, manifest: Manifest, records: dict[str, FileRecord], report: IngestReport
) -> Placed:
    """The found files keyed by their sources (``ingest.sources``); refused files reported."""
    everything = Discovery(
        found.files + [file for file, _ in found.refused], [], found.roots, [], found.given
    )
    placed = place(everything, manifest.sources(), set(records))
    refused_paths = {file.path for file, _ in found.refused}
    reasons = {file.path: reason for file, reason in found.refused}
    for file in placed.files:
        if file.path in refused_paths:
            report.fail(printable(file.source), reasons[file.path])
    files = [f for f in placed.files if f.path not in refused_paths]
    # A refused file is still there (a link now pointing outside): like a file that fails to
    # parse, it keeps its chunks; so it counts as present when looking for deleted documents.
    present = [f for f in placed.files if f.path in refused_paths]
    return Placed(files, placed.scopes, placed.new_sources, present)


def _deleted(placed: Placed, records: dict[str, FileRecord]) -> list[str]:
    """Recorded documents under a folder walked in full whose file is gone; only the sources
    (and the parts of them) that were walked."""
    present = {f.source for f in placed.files} | {f.source for f in placed.kept}
    return sorted(
        key
        for key, record in records.items()
        if key not in present and any(s.covers(record.root, key) for s in placed.scopes)
    )


def _record(report: IngestReport) -> None:
    """Count a finished ingest in the metrics of the process that ran it (``citewise ingest``
    adds to a server's /metrics when both share PROMETHEUS_MULTIPROC_DIR)."""
    kb = report.kb
    for outcome, files in (
        ("added", report.files_added),
        ("changed", report.files_changed),
        ("unchanged", report.files_unchanged),
        ("deleted", report.files_deleted),
        ("skipped", report.files_skipped),
        ("failed", report.files_failed),
    ):
        metrics.INGEST_FILES.labels(kb, outcome).inc(files)  # zeros too: the series exist
    metrics.INGEST_CHUNKS_EMBEDDED.labels(kb).inc(report.chunks_embedded)
    metrics.INGEST_SECONDS.labels(kb).observe(report.seconds)


def _note_failures(manifest: Manifest, placed: Placed, report: IngestReport) -> None:
    """Keep each document's last failure in the manifest (``citewise docs list`` shows it): set
    for the files that failed in this run, cleared for those read without failing and for
    those gone from a folder walked in full. A file refused because another folder's document
    holds its key leaves that document's record alone."""
    records = manifest.records()
    roots = {
        f.source: str(f.root)
        for f in [*placed.files, *placed.kept]
        if f.source not in records or records[f.source].root == str(f.root)
    }
    failed = {f.path: (roots[f.path], f.error) for f in report.failures if f.path in roots}
    gone = {
        key
        for key, failure in manifest.failures().items()
        if key not in roots and any(s.covers(failure.root, key) for s in placed.scopes)
    }
    manifest.note_failures(failed, set(roots) | gone)
