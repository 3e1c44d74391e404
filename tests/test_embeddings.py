"""The local embedding model: asked for a GPU on a machine without one, it says so once and
embeds on the CPU, giving the same vectors."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest

from citewise.search.embeddings import CPU, LocalEmbeddings
from citewise.settings import Settings
from citewise.wiring import build_embeddings


def test_cuda_without_a_gpu_falls_back_to_the_cpu_with_one_log_line(
    make_settings: Callable[..., Settings],
    embeddings: LocalEmbeddings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = build_embeddings(make_settings(embedding_device="cuda"))
    with caplog.at_level(logging.WARNING, logger="citewise.search.embeddings"):
        vectors = model.embed_documents(["Refunds take five days.", "Invoices are monthly."])
        model.embed_query("refunds")
    assert model.providers == [CPU]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "CITEWISE_EMBEDDING_DEVICE=cuda" in lines[0], lines
    assert "runs on the CPU" in lines[0]
    expected = embeddings.embed_documents(["Refunds take five days.", "Invoices are monthly."])
    assert np.allclose(vectors, expected, atol=1e-5)
    assert embeddings.device == "cpu" and model.device == "cuda"
