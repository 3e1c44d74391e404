"""Fixtures are factories over real parts: the local model, embedded Chroma, real files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from citewise.embeddings import LocalEmbeddings
from citewise.offline import prepare_offline
from citewise.providers import build_embeddings, build_store
from citewise.settings import Settings
from ingest.pipeline import IngestPipeline
from ingest.report import IngestReport

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh offline-asset cache, prepared the way every entry point prepares it."""
    path = tmp_path_factory.mktemp("cache")
    prepare_offline(path)
    return path


@pytest.fixture
def make_settings(tmp_path: Path, cache_dir: Path) -> Callable[..., Settings]:
    """Settings with a fresh CITEWISE_HOME per test; keyword arguments override."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"home": tmp_path / "home", "cache_dir": cache_dir}
        return Settings(**(values | overrides))

    return make


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> LocalEmbeddings:
    return build_embeddings(Settings(home=tmp_path_factory.mktemp("unused"), cache_dir=cache_dir))


@pytest.fixture
def ingest(
    make_settings: Callable[..., Settings], embeddings: LocalEmbeddings
) -> Callable[..., IngestReport]:
    """Run the real pipeline: ``ingest(path, kb=..., dry_run=..., **settings_overrides)``."""

    def run(
        *paths: Path,
        kb: str = "default",
        dry_run: bool = False,
        rebuild: bool = False,
        **overrides: Any,
    ) -> IngestReport:
        settings = make_settings(**overrides)
        pipeline = IngestPipeline(settings, build_store(settings, create=not dry_run), embeddings)
        return pipeline.run(list(paths), kb, dry_run=dry_run, rebuild=rebuild)

    return run


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of one sample document per format."""
    target = tmp_path / "corpus"
    target.mkdir()
    for suffix in (".md", ".txt", ".html", ".pdf", ".docx"):
        first = sorted(SAMPLE.rglob(f"*{suffix}"))[0]
        shutil.copy(first, target / first.name)
    return target


def snapshot(settings: Settings, kb: str = "default") -> dict[str, str]:
    """id -> content hash of everything stored in a knowledge base."""
    return build_store(settings).knowledge_base(kb).snapshot()
