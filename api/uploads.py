"""Receiving uploaded documents for an ingest job, within limits, under safe names.

Each request's files are written to a folder of its own,
``CITEWISE_HOME/uploads/.staging/<job id>/`` (kept out of every knowledge base's folder), and
only once all of them arrived within their limits and the knowledge base is claimed for the job
are they renamed into ``CITEWISE_HOME/uploads/<kb>/`` (a folder the worker must also see: the
same volume in the compose file), just before the job is queued. The claim makes the request
the only writer of that folder until its job ends, so a request that is refused for any reason
(too large, a bad name, 409 because a job of that knowledge base is queued or running) leaves
nothing there, however many arrive at once, and a job never ingests the files of a request that
got an error. A file uploaded again under the same name replaces the old one (put back if
queueing the job fails), and the next ingest of the folder notices the change like any edit.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile

from citewise.errors import InvalidRequest, UploadTooLarge
from citewise.settings import LimitSettings
from ingest.uploads import safe_upload_name

TOTAL_FACTOR = 10  # a request may carry at most this many maximum-size files' worth of bytes
READ_BYTES = 1 << 20
STAGING = ".staging"  # under the uploads folder; knowledge base names cannot start with "."
STALE_S = 86400  # a staging folder this old was left by a process that died mid-request
_REPLACED = ".replaced"  # in a staging folder: the files a promotion replaced, until it is kept


@dataclass(frozen=True)
class StagedUpload:
    """One request's files, in its staging folder until promoted into a knowledge base's."""

    folder: Path
    names: list[str]
    rebuild: bool

    def promote_into(self, target: Path) -> Callable[[], None]:
        """Rename the files into ``target`` (replacing same-named ones); returns an undo.

        Only while the knowledge base is claimed: nothing else writes ``target`` then."""
        target.mkdir(parents=True, exist_ok=True)
        replaced = self.folder / _REPLACED
        replaced.mkdir()
        moved: list[tuple[str, bool]] = []  # (name, whether a file of that name was there)

        def undo() -> None:
            for name, had in reversed(moved):
                if not (self.folder / name).exists():  # ours went in: take it out
                    (target / name).unlink(missing_ok=True)
                if had:
                    os.replace(replaced / name, target / name)

        try:
            for name in self.names:
                had = os.path.lexists(target / name)
                if had:
                    os.replace(target / name, replaced / name)
                moved.append((name, had))
                os.replace(self.folder / name, target / name)
        except BaseException:
            undo()
            raise
        return undo

    def discard(self) -> None:
        """Remove the staging folder, with whatever is still in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


def request_limit(settings: LimitSettings) -> int:
    """The most bytes one upload request may carry: ``TOTAL_FACTOR`` largest files' worth."""
    return int(settings.max_upload_mb * 2**20) * TOTAL_FACTOR


def request_too_large(settings: LimitSettings) -> UploadTooLarge:
    return UploadTooLarge(
        f"an upload may carry at most {settings.max_upload_mb * TOTAL_FACTOR:g} MB in all "
        f"({TOTAL_FACTOR} times CITEWISE_MAX_UPLOAD_MB)"
    )


async def receive_uploads(
    request: Request, job_id: str, settings: LimitSettings, uploads: Path
) -> StagedUpload:
    """Store the request's files in a staging folder of their own, named by ``job_id``."""
    per_file = int(settings.max_upload_mb * 2**20)
    total = request_limit(settings)
    declared = request.headers.get("content-length")
    # Checked before reading: Starlette would otherwise spool any size to disk first.
    if declared is None or not declared.isdigit():
        raise InvalidRequest("uploads need a Content-Length header")
    if int(declared) > total:
        raise request_too_large(settings)
    form = await request.form(max_files=settings.max_upload_files, max_fields=10)
    try:
        files = [v for k, v in form.multi_items() if k == "files" and isinstance(v, UploadFile)]
        if not files:
            raise InvalidRequest("no files: send them in the multipart field 'files'")
        rebuild = str(form.get("rebuild", "false")).strip().lower() in ("1", "true", "yes", "on")
        staging = uploads / STAGING
        _sweep(staging)
        folder = staging / job_id
        folder.mkdir(parents=True)
        staged = StagedUpload(folder, [], rebuild)
        try:
            for upload in files:
                staged.names.append(await _stage(upload, folder, per_file, set(staged.names)))
        except BaseException:
            staged.discard()
            raise
    finally:
        await form.close()
    return staged


async def _stage(upload: UploadFile, folder: Path, limit: int, taken: set[str]) -> str:
    name = safe_upload_name(upload.filename or "")
    if name in taken:
        raise InvalidRequest(f"two uploaded files are both named {name!r}")
    size = 0
    with (folder / name).open("wb") as out:
        while chunk := await upload.read(READ_BYTES):
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(
                    f"{name} is larger than {limit // 2**20} MB (CITEWISE_MAX_UPLOAD_MB)"
                )
            out.write(chunk)
    if size == 0:
        raise InvalidRequest(f"{name} is empty")
    return name


def _sweep(staging: Path) -> None:
    """Remove staging folders left by a process that died mid-request (a day old)."""
    try:
        entries = list(staging.iterdir())
    except FileNotFoundError:
        return
    cutoff = time.time() - STALE_S
    for entry in entries:
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            continue
