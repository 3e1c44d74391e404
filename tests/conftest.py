"""Fixtures are factories over real parts: the local model, embedded Chroma, real files, and
the Redis at $CITEWISE_TEST_REDIS_URL (``make test`` makes sure one answers)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from citewise.offline import prepare_offline
from citewise.search.embeddings import LocalEmbeddings
from citewise.settings import Settings
from citewise.wiring import build_embeddings, build_store
from ingest.pipeline import IngestPipeline
from ingest.report import IngestReport

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"
ANSWER_UNITS = "CITEWISE_INGEST_ANSWER_UNITS"

# Tests build their settings explicitly: a developer's .env in the repository (docker compose
# reads one there) must not reach them. Tests of the .env file itself set this back.
os.environ["CITEWISE_ENV_FILE"] = "off"
# An ingest with a Redis also embeds every passage's answer units for the offline answerer,
# which only moves work it would do at question time earlier (the same vectors, the same
# answers) and costs a sample ingest about 1,100 embeddings. Tests switch it off; the tests of
# that warm-up (tests/test_embedding_cache.py, the sharded ingest's workers) switch it on.
os.environ[ANSWER_UNITS] = "false"

if TYPE_CHECKING:
    from tests.chroma_helpers import ChromaServer


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis; tests own their keys through ``redis_prefix``."""
    url = os.environ.get("CITEWISE_TEST_REDIS_URL") or DEFAULT_TEST_REDIS  # noqa: TID251
    redis.Redis.from_url(url, socket_timeout=5).ping()  # fail clearly, never skip
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"cwtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session", autouse=True)
def test_client_host() -> Iterator[None]:
    """Starlette's test client sends ``Host: testserver``, which a service without keys does
    not answer to (it answers to localhost names only): tests add it, as Django's test runner
    adds it to ALLOWED_HOSTS. Tests of the default remove the variable."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CITEWISE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
        yield


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


@pytest.fixture(scope="session")
def home(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
) -> Path:
    """A Citewise home with data/sample ingested once per session (read-only for tests)."""
    from tests.answer_helpers import sample_home

    return sample_home(request.config, tmp_path_factory, embeddings, cache_dir)


@pytest.fixture
def ingest(
    make_settings: Callable[..., Settings], embeddings: LocalEmbeddings
) -> Callable[..., IngestReport]:
    """Run the real pipeline: ``ingest(path, kb=..., dry_run=..., confine=...,
    **settings_overrides)``."""

    def run(
        *paths: Path,
        kb: str = "default",
        dry_run: bool = False,
        rebuild: bool = False,
        confine: Path | None = None,
        **overrides: Any,
    ) -> IngestReport:
        settings = make_settings(**overrides)
        pipeline = IngestPipeline(settings, build_store(settings, create=not dry_run), embeddings)
        return pipeline.run(list(paths), kb, dry_run=dry_run, rebuild=rebuild, confine=confine)

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


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """A real ``chroma run`` for the module's tests, stopped afterwards."""
    from tests.chroma_helpers import ChromaServer  # it imports this module

    server = ChromaServer(tmp_path_factory.mktemp("chroma-server"))
    server.start()
    yield server
    server.stop()
