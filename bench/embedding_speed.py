"""How fast the embedding model itself goes (chunks/s) under each batching and onnxruntime
setting, on the chunk texts of the FastAPI documentation (the ``bench/ingest.py`` corpus).

Each variant embeds the same sample of chunk texts; variants run in turns (every variant
once, then every variant again...) and the best of ``--rounds`` counts, so a burst of load from
elsewhere on the machine costs one round of one variant, not a whole variant. Variants:

- ``baseline``: what ``LocalEmbeddings`` does (texts sorted by characters, 64 a batch, one
  intra-op thread per core, idle threads sleep, every graph optimisation);
- ``unsorted``: no length sorting (what the sorting is worth);
- ``batch-N``: N texts a batch;
- ``tokens-N``: batches cut by padded size (at most N word pieces, padding included), texts
  sorted by word pieces rather than characters;
- ``threads-1``: one intra-op thread;
- ``spin``: idle threads spin (what a server does; an ingest lets them sleep for the parser);
- ``opt-extended`` / ``opt-basic``: fewer graph optimisations.

Run:  .venv/bin/python bench/embedding_speed.py [--corpus DIR] [--sample N] [--rounds R]
Writes bench/results/embedding_speed.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root, not bench/, comes first
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime

from bench.ingest import DEFAULT_CORPUS, _embed_texts
from citewise.search.embeddings import CPU, LocalEmbeddings
from citewise.settings import Settings
from citewise.wiring import build_embeddings

HERE = Path(__file__).resolve().parent


class Variant(LocalEmbeddings):
    """The shipped model with one thing changed: session options or how batches are cut."""

    def __init__(
        self,
        base: LocalEmbeddings,
        *,
        batch_size: int = 64,
        threads: int = 0,
        spin: bool = False,
        level: Any = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
        order: str = "chars",
        token_budget: int = 0,
    ) -> None:
        self.__dict__.update(base.__dict__)  # the same model file and tokenizer
        self._session = None
        self.batch_size = batch_size
        self._threads = threads or (os.cpu_count() or 1)
        self._spin = spin
        self._level = level
        self._order = order
        self._budget = token_budget

    def load(self) -> None:
        if self._session is None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = self._level
            spin = "1" if self._spin else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", spin)
            self._session = onnxruntime.InferenceSession(self._model_path, options, providers=[CPU])

    def embed_array(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for batch in self._batches(texts):
            out[batch] = self._embed_batch([texts[i] for i in batch])
        return out

    def _batches(self, texts: Sequence[str]) -> list[list[int]]:
        if self._order == "none":
            order = list(range(len(texts)))
        elif self._order == "tokens":
            lengths = [min(self.count_tokens(t), self.max_tokens) for t in texts]
            order = sorted(range(len(texts)), key=lambda i: lengths[i])
        else:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        if not self._budget:
            return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        batches: list[list[int]] = [[]]
        for i in order:  # sorted by word pieces: the newest text is the batch's longest
            if batches[-1] and (len(batches[-1]) + 1) * lengths[i] > self._budget:
                batches.append([])
            batches[-1].append(i)
        return batches


VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "unsorted": {"order": "none"},
    "batch-16": {"batch_size": 16},
    "batch-32": {"batch_size": 32},
    "batch-128": {"batch_size": 128},
    "tokens-4096": {"order": "tokens", "token_budget": 4096},
    "tokens-8192": {"order": "tokens", "token_budget": 8192},
    "tokens-16384": {"order": "tokens", "token_budget": 16384},
    "threads-1": {"threads": 1},
    "spin": {"spin": True},
    "opt-extended": {"level": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED},
    "opt-basic": {"level": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sample", type=int, default=800, help="chunk texts per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "embedding_speed.json")
    args = parser.parse_args()

    settings = Settings(home=Path(tempfile.mkdtemp(prefix="citewise-bench-")))
    texts = _embed_texts(args.corpus, settings)
    sample = random.Random(18).sample(texts, min(args.sample, len(texts)))
    base = build_embeddings(settings)
    names = args.only or list(VARIANTS)
    models = {name: Variant(base, **VARIANTS[name]) for name in names}
    for model in models.values():
        model.load()  # sessions are built before the clock runs
    reference = models[names[0]].embed_array(sample)  # also warms the page cache
    best: dict[str, float] = {}
    runs: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name, model in models.items():
            seconds = _timed(lambda m=model: _check(m.embed_array(sample), reference))
            runs[name].append(round(len(sample) / seconds, 2))
            best[name] = max(best.get(name, 0.0), len(sample) / seconds)
            print(f"round {round_ + 1} {name:>14}: {len(sample) / seconds:6.1f} chunks/s")
    results = {
        "corpus": "fastapi_docs chunk texts (as bench/ingest.py embeds them)",
        "sample": len(sample),
        "rounds": args.rounds,
        "chunks_per_s_best": {name: round(rate, 2) for name, rate in best.items()},
        "chunks_per_s_runs": runs,
        "relative_to_baseline": {n: round(r / best["baseline"], 3) for n, r in best.items()}
        if "baseline" in best
        else {},
        "onnxruntime": onnxruntime.__version__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results["relative_to_baseline"], indent=2))


def _timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _check(vectors: np.ndarray[Any, Any], reference: np.ndarray[Any, Any]) -> None:
    """Every variant must give the same vectors (batching changes padding, not meaning)."""
    worst = float(np.max(1.0 - np.sum(vectors * reference, axis=1)))
    assert worst < 1e-3, f"vectors moved: cosine distance {worst}"


if __name__ == "__main__":
    main()
