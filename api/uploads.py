"""Receiving uploaded documents for an ingest job, within limits, under safe names.

Files land in ``CITEWISE_HOME/uploads/<kb>/`` (a folder the worker must also see: the same
volume in the compose file), written to a temporary name and renamed into place only when every
file of the request has arrived within its limits, so a refused request leaves nothing behind.
A file uploaded again under the same name replaces the old one, and the next ingest of the
folder notices the change like any edit.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile

from citewise.errors import InvalidRequest, UploadTooLarge
from citewise.settings import LimitSettings
from ingest.uploads import safe_upload_name

TOTAL_FACTOR = 10  # a request may carry at most this many maximum-size files' worth of bytes
READ_BYTES = 1 << 20


async def receive_uploads(
    request: Request, kb: str, settings: LimitSettings, uploads: Path
) -> tuple[Path, bool]:
    """Store the request's files under ``uploads``; the folder to ingest and whether to
    rebuild."""
    per_file = int(settings.max_upload_mb * 1024 * 1024)
    total = per_file * TOTAL_FACTOR
    declared = request.headers.get("content-length")
    # Checked before reading: Starlette would otherwise spool any size to disk first.
    if declared is None or not declared.isdigit():
        raise InvalidRequest("uploads need a Content-Length header")
    if int(declared) > total:
        raise UploadTooLarge(f"an upload may carry at most {total // 2**20} MB in all")
    form = await request.form(max_files=settings.max_upload_files, max_fields=10)
    try:
        files = [v for k, v in form.multi_items() if k == "files" and isinstance(v, UploadFile)]
        if not files:
            raise InvalidRequest("no files: send them in the multipart field 'files'")
        rebuild = str(form.get("rebuild", "false")).strip().lower() in ("1", "true", "yes", "on")
        folder = uploads / kb
        folder.mkdir(parents=True, exist_ok=True)
        staged: list[tuple[Path, Path]] = []
        try:
            for upload in files:
                staged.append(await _stage(upload, folder, per_file, {f for _, f in staged}))
            for temporary, final in staged:
                os.replace(temporary, final)
        finally:
            for temporary, _ in staged:
                temporary.unlink(missing_ok=True)
    finally:
        await form.close()
    return folder, rebuild


async def _stage(
    upload: UploadFile, folder: Path, limit: int, taken: set[Path]
) -> tuple[Path, Path]:
    final = folder / safe_upload_name(upload.filename or "")
    if final in taken:
        raise InvalidRequest(f"two uploaded files are both named {final.name!r}")
    temporary = folder / f".upload-{uuid.uuid4().hex}.part"
    size = 0
    try:
        with temporary.open("wb") as out:
            while chunk := await upload.read(READ_BYTES):
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(
                        f"{final.name} is larger than {limit // 2**20} MB (CITEWISE_MAX_UPLOAD_MB)"
                    )
                out.write(chunk)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if size == 0:
        temporary.unlink(missing_ok=True)
        raise InvalidRequest(f"{final.name} is empty")
    return temporary, final
