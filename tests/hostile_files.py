"""Hostile files made on the spot (nothing large is committed): zip bombs, deep nesting, PDFs
that amplify their content."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_MIB = 1 << 20


class _Member:
    def __init__(self, name: str, raw: bytes, crc: int, size: int) -> None:
        self.name, self.raw, self.crc, self.size = name.encode(), raw, crc, size


def _deflated(name: str, data: bytes) -> _Member:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = compressor.compress(data) + compressor.flush()
    return _Member(name, raw, zlib.crc32(data), len(data))


def _inflating(name: str, head: bytes, filler: bytes, repeats: int, tail: bytes) -> _Member:
    """A member that inflates to head + filler * repeats + tail, compressing ``filler`` once.

    A full flush ends a deflate segment on a byte boundary with no reference to earlier data,
    so the same compressed segment can be repeated: 1 MiB of one repeated tag is ~1 KiB.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(filler) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(filler, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + len(filler) * repeats + len(tail)
    return _Member(name, start + segment * repeats + end, crc, size)


def _write_zip(path: Path, members: list[_Member]) -> None:
    """A plain (non-zip64) archive written by hand: zipfile cannot store pre-deflated data."""
    central = b""
    with path.open("wb") as out:
        for m in members:
            offset = out.tell()
            fields = (20, 0, zipfile.ZIP_DEFLATED, 0, _DOS_DATE, m.crc, len(m.raw), m.size)
            out.write(struct.pack("<4s5HIII2H", b"PK\x03\x04", *fields, len(m.name), 0))
            out.write(m.name)
            out.write(m.raw)
            central += struct.pack(
                "<4s6HIII5HII", b"PK\x01\x02", 20, *fields, len(m.name), 0, 0, 0, 0, 0, offset
            )
            central += m.name
        start = out.tell()
        out.write(central)
        n = len(members)
        out.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(central), start, 0))


_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx_bomb(path: Path, template: Path, inflated_mib: int) -> None:
    """A Word file copied from ``template`` whose document.xml holds ``inflated_mib`` MiB of
    short paragraphs: a valid document, about 1 KiB per MiB it inflates to."""
    with zipfile.ZipFile(template) as source:
        members = [
            _deflated(info.filename, source.read(info))
            for info in source.infolist()
            if info.filename != "word/document.xml"
        ]
    head = f"<?xml version='1.0' encoding='UTF-8'?><w:document {_W}><w:body>".encode()
    paragraph = b"<w:p><w:r><w:t>Bomb.</w:t></w:r></w:p>"
    filler = paragraph * (_MIB // len(paragraph))
    tail = b"</w:body></w:document>"
    document = _inflating("word/document.xml", head, filler, inflated_mib, tail)
    _write_zip(path, [*members, document])


def nested_html(levels: int) -> str:
    return "<html><body>" + "<div>" * levels + "Deep." + "</div>" * levels + "</body></html>"


def nested_list_markdown(levels: int) -> str:
    return "".join("  " * level + "- item\n" for level in range(levels))


def list_after_unclosed_fence(levels: int) -> str:
    """A deep list behind an indented, never-closed fence: text to Python-Markdown, which parses
    the list after it (a guard that took it for code would skip the list)."""
    return "   ```\n" + nested_list_markdown(levels)


def pdf_shared_content(path: Path, pages: int, content_bytes: int) -> None:
    """A valid PDF whose ``pages`` all draw one content stream of ``content_bytes`` (text
    operators, deflated to a few KB): pypdf decodes and interprets it once per page."""
    line = b"BT /F1 12 Tf 72 700 Td (All work and no play makes Jack a dull boy.) Tj ET\n"
    data = zlib.compress(line * (content_bytes // len(line)), 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
        *[page] * pages,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
