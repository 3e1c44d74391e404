"""Open a discovered file once, beneath its folder, and never through a link that leads out.

A path that is checked and later reopened by name can be swapped in between: a file in the
ingest root flipped to a symlink to a file elsewhere, while jobs run, got that file ingested.
So nothing here opens a path by name. Each folder from the anchor down is opened relative to
the previous folder's descriptor with ``O_NOFOLLOW``, the file itself too, and only a regular
file is read (``O_NONBLOCK``, so opening a pipe returns at once instead of blocking). The
descriptor that was checked is the one read: the bytes hashed are the bytes parsed.

A symlink inside the folder to another file inside it is still read, as discovery allows it:
its target is resolved and opened the same way, once; a target outside the anchor, or a link
that changes again meanwhile, is refused.

(``openat2`` with ``RESOLVE_BENEATH`` would do the walk in one call, but Python does not
expose it, and the walk below is what it does.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from citewise.errors import DocumentError

_MB = 1024 * 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BLOCK = 1 << 20

OUTSIDE = "a symbolic link to a file outside the ingested folder (not followed)"


class TooLargeFile(DocumentError):
    """A file over CITEWISE_MAX_FILE_MB."""


def too_large(size: int, limit: int) -> TooLargeFile:
    return TooLargeFile(
        f"{size / _MB:.1f} MB is over the {limit / _MB:g} MB limit (CITEWISE_MAX_FILE_MB)"
    )


@contextmanager
def opened_beneath(anchor: Path, path: Path) -> Iterator[tuple[int, int]]:
    """(descriptor, size) of the regular file ``path``, opened beneath ``anchor``."""
    descriptor = _open(anchor, path, follow_once=True)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError("not a regular file (a pipe, socket or device)")
        yield descriptor, info.st_size
    finally:
        os.close(descriptor)


def read_beneath(anchor: Path, path: Path, limit: int) -> bytes:
    """The whole file, refused when it is (or has grown) over ``limit`` bytes."""
    with opened_beneath(anchor, path) as (descriptor, size):
        return b"".join(_blocks(descriptor, size, limit))


def hash_beneath(anchor: Path, path: Path, limit: int) -> tuple[str, int]:
    """(SHA-256 hex digest, size) of the file, read in blocks; over ``limit`` is refused."""
    digest, total = hashlib.sha256(), 0
    with opened_beneath(anchor, path) as (descriptor, size):
        for block in _blocks(descriptor, size, limit):
            digest.update(block)
            total += len(block)
    return digest.hexdigest(), total


def _blocks(descriptor: int, size: int, limit: int) -> Iterator[bytes]:
    """The file's bytes in blocks; ``too_large`` from its size, or once it has grown past."""
    if size > limit:
        raise too_large(size, limit)
    total = 0
    while block := os.read(descriptor, _BLOCK):
        total += len(block)
        if total > limit:
            raise too_large(total, limit)
        yield block


def _open(anchor: Path, path: Path, *, follow_once: bool) -> int:
    try:
        parts = path.relative_to(anchor).parts
    except ValueError:
        raise DocumentError("outside the ingested folder (not read)") from None
    if not parts or any(part in (".", "..") for part in parts):
        raise DocumentError("outside the ingested folder (not read)")
    folder = os.open(anchor, _DIRECTORY & ~os.O_NOFOLLOW)  # the anchor itself is resolved
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIRECTORY, dir_fd=folder)
            except OSError as exc:
                raise DocumentError(_why(exc, "a folder on its path")) from None
            os.close(folder)
            folder = inner
        try:
            return os.open(parts[-1], _FILE, dir_fd=folder)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise DocumentError(_why(exc, "the file")) from None
    finally:
        os.close(folder)
    # The file is a symlink: read it only if it resolves inside the anchor, and only once.
    if not follow_once:
        raise DocumentError("a symbolic link that changed while it was read (not followed)")
    try:
        target = Path(os.path.realpath(path))
    except OSError as exc:  # swapped again between realpath's look and its readlink (EINVAL)
        raise DocumentError(_why(exc, "the file")) from None
    if not target.is_relative_to(anchor):
        raise DocumentError(OUTSIDE)
    return _open(anchor, target, follow_once=False)


def _why(exc: OSError, what: str) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL):  # EINVAL: readlink of a file
        return f"{what} became a symbolic link or a file while it was read (not followed)"
    if exc.errno == errno.ENOENT:
        return f"{what} disappeared while it was read"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return f"could not be opened ({errno.errorcode.get(exc.errno or 0, 'error')})"
