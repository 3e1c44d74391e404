"""Names and sizes of uploaded files, checked before anything is written.

An upload's file name comes from the client and may be anything: a path (``../../etc/x.md``,
``C:\\docs\\x.md``), control characters, a name that hides the file (``.bashrc``) or one Windows
cannot create (``CON.txt``). ``safe_upload_name`` keeps only a plain file name that is safe on
any file system and that the ingest can parse; it never consults the file system.
"""

from __future__ import annotations

import re
import unicodedata

from citewise.errors import InvalidRequest, UploadTooLarge
from ingest.loaders import PARSERS

# Well under the 255 bytes most file systems allow, leaving room for a prefix or suffix that
# storage may add (a temporary name while the upload is written).
MAX_NAME_BYTES = 200

# NFKC already turns fullwidth and small solidus forms into / and \; these slash lookalikes
# survive it, and a later tool that maps them to ASCII would turn them into separators.
_SEPARATORS = re.compile(r"[/\\\u2044\u2215\u29f8\u29f9]")
# Reserved on Windows or in URLs and shells; replaced so the name means the same everywhere.
_AWKWARD = re.compile(r'[<>:"|?*\x7f]')
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])$", re.IGNORECASE)
_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}  # controls, bidi overrides, unassigned


def safe_upload_name(filename: str) -> str:
    """The last path component of ``filename``, cleaned, with its extension kept.

    Raises ``InvalidRequest`` when nothing usable is left or the extension is not one the
    ingest parses.
    """
    name = unicodedata.normalize("NFKC", filename)
    name = _SEPARATORS.split(name)[-1]  # a/b/../c.md -> c.md; ../../etc/passwd -> passwd
    name = " ".join(name.split())  # tabs, newlines and odd spaces -> one space
    name = "".join(c for c in name if unicodedata.category(c) not in _INVISIBLE)
    name = _AWKWARD.sub("_", name)
    # Leading dots hide a file (the ingest skips hidden files); trailing dots and spaces are
    # dropped by Windows, which would change the extension.
    name = name.lstrip(". ").rstrip(". ")
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem.strip():
        raise InvalidRequest(f"the file name {_shown(filename)} has no usable name and extension")
    if f".{extension.lower()}" not in PARSERS:
        supported = ", ".join(sorted(PARSERS))
        raise InvalidRequest(
            f"the file type of {_shown(filename)} cannot be ingested (supported: {supported})"
        )
    stem = stem.rstrip(". ")
    device, dot, rest = stem.partition(".")
    if _WINDOWS_DEVICES.match(device.rstrip()):  # Windows reserves CON.txt and CON.x.txt alike
        stem = f"{device}_{dot}{rest}"
    return _fit(stem, f".{extension}")


def check_upload(name: str, size: int, max_bytes: int) -> str:
    """The safe name of an upload of ``size`` bytes, or ``InvalidRequest`` (``UploadTooLarge``
    when over ``max_bytes``: the caller passes CITEWISE_MAX_FILE_MB in bytes).

    Call it before writing (with the declared size) and again with the bytes received, since
    a client may send more than it declared.
    """
    safe = safe_upload_name(name)
    if size <= 0:
        raise InvalidRequest(f"{safe} is empty")
    if size > max_bytes:
        raise UploadTooLarge(
            f"{safe} is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:g} MB limit "
            "(CITEWISE_MAX_FILE_MB)"
        )
    return safe


def _fit(stem: str, extension: str) -> str:
    """Cut the stem (never the extension) to fit MAX_NAME_BYTES of UTF-8."""
    room = MAX_NAME_BYTES - len(extension.encode())  # supported extensions are short
    return stem.encode()[:room].decode("utf-8", "ignore").rstrip(". ") + extension


def _shown(filename: str) -> str:
    """The client's name as it may appear in an error message: printable and short."""
    printable = "".join(c if c.isprintable() else "\ufffd" for c in filename)
    return repr(printable[:80] + ("…" if len(printable) > 80 else ""))
