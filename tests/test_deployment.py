"""The deployment files describe the topology the other tests run: docker-compose.yml parsed
with PyYAML, the Dockerfile read line by line, and the health probes run for real where they
can run here (Chroma's against a real `chroma run`, the API's against the real app)."""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import json
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.main import create_app
from citewise.settings import FLAT, Settings
from tests.answer_helpers import serve
from tests.chroma_helpers import ChromaServer
from tests.conftest import REPO

CITEWISE_SERVICES = ("api", "worker", "ingest")
SHARED = ("CITEWISE_REDIS_URL", "CITEWISE_CHROMA_URL", "CITEWISE_WIDGET_SECRET")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def substituted(value: str) -> str:
    """A value as compose passes it when the variable is unset: ``${X:-d}`` -> d, ``$$`` -> $."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    return value.replace("$$", "$")


def test_every_service_has_an_image_and_the_citewise_ones_share_one(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == {"redis", "chroma", *CITEWISE_SERVICES}
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
    assert {services[n]["build"] for n in CITEWISE_SERVICES} == {"."}
    assert len({services[n]["image"] for n in CITEWISE_SERVICES}) == 1  # built once


def test_the_chroma_image_matches_the_client_in_use(services: dict[str, dict[str, Any]]) -> None:
    image, tag = services["chroma"]["image"].split(":")
    assert image == "chromadb/chroma"
    client = importlib.metadata.version("chromadb")
    assert tag.split(".")[:2] == client.split(".")[:2], f"image {tag}, client {client}"


def test_long_running_services_have_healthchecks_and_wait_for_healthy_stores(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("redis", "chroma", "api"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    for name in CITEWISE_SERVICES:
        assert services[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "chroma": {"condition": "service_healthy"},
        }, name


def test_api_and_workers_share_redis_chroma_and_secrets(
    services: dict[str, dict[str, Any]],
) -> None:
    environments = {n: services[n]["environment"] for n in CITEWISE_SERVICES}
    for variable in SHARED:
        assert len({str(env.get(variable)) for env in environments.values()}) == 1, variable
    env = environments["api"]
    assert env["CITEWISE_REDIS_URL"] == "redis://redis:6379/0"  # the redis service
    assert env["CITEWISE_CHROMA_URL"] == "http://chroma:8000"  # the chroma service's port
    Settings.model_validate({"chroma_url": env["CITEWISE_CHROMA_URL"]})


def test_the_api_leaves_ingest_jobs_to_the_worker_service(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["api"]["environment"]["CITEWISE_WORKERS"] == "external"
    assert services["worker"]["command"] == ["citewise", "worker"]
    assert Settings.model_validate({"workers": "external"}).ingest.workers == "external"


def test_every_variable_set_is_a_citewise_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = set(FLAT)
    for name in CITEWISE_SERVICES:
        for variable in services[name]["environment"]:
            assert variable.startswith("CITEWISE_"), variable
            assert variable.removeprefix("CITEWISE_").lower() in fields, variable


def test_redis_and_chroma_keep_their_data_in_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    declared = set(compose["volumes"])
    for name in ("redis", "chroma"):
        (volume,) = services[name]["volumes"]
        source, target = volume.split(":")
        assert source in declared and target == "/data", name
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    # Workers and the one-off ingest share the ingest manifest and locks.
    assert services["worker"]["volumes"] == services["ingest"]["volumes"]


def test_the_api_runs_the_app_factory_with_workers(services: dict[str, dict[str, Any]]) -> None:
    command = [substituted(part) for part in services["api"]["command"]]
    assert command[:2] == ["uvicorn", "--factory"]
    module, _, attribute = command[2].partition(":")
    assert getattr(importlib.import_module(module), attribute) is create_app
    workers = command[command.index("--workers") + 1]
    assert int(workers) >= 1
    assert "${API_WORKERS" in services["api"]["command"][command.index("--workers") + 1]
    # X-Forwarded-For is the app's business (CITEWISE_TRUSTED_PROXIES), not uvicorn's.
    assert "--no-proxy-headers" in command and "--forwarded-allow-ips" not in command


def test_the_worker_and_the_ingest_run_citewise_commands(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["worker"]["command"] == ["citewise", "worker"]
    assert services["ingest"]["command"][:2] == ["citewise", "ingest"]
    assert services["ingest"]["profiles"] == ["ingest"]  # one-off: not started by `up`


def test_the_chroma_healthcheck_asks_a_real_server(
    services: dict[str, dict[str, Any]], chroma_server: ChromaServer
) -> None:
    probe = [substituted(p) for p in services["chroma"]["healthcheck"]["test"][1:]]
    here = [p.replace("127.0.0.1/8000", f"127.0.0.1/{chroma_server.port}") for p in probe]
    assert here != probe
    assert subprocess.run(here, timeout=30).returncode == 0
    wrong_path = [p.replace("/api/v2/heartbeat", "/api/v2/no-such-thing") for p in here]
    assert subprocess.run(wrong_path, timeout=30).returncode != 0


def test_the_api_healthcheck_follows_readiness(
    services: dict[str, dict[str, Any]],
    home: Path,
    make_settings: Callable[..., Settings],
    cache_dir: Path,
) -> None:
    probe = services["api"]["healthcheck"]["test"][1:]

    def probe_exit(url: str) -> int:
        here = [p.replace("http://127.0.0.1:8000", url) for p in probe]
        assert here != probe
        return subprocess.run(here, timeout=60, capture_output=True).returncode

    ready = Settings(home=home, cache_dir=cache_dir, redis_url="off")
    with serve(create_app(ready)) as url:
        assert probe_exit(url) == 0
    empty = make_settings(redis_url="off")  # no knowledge base yet: ready all the same
    with serve(create_app(empty)) as url:
        assert probe_exit(url) == 0
    # A store that cannot be reached: not ready.
    no_store = make_settings(redis_url="off", chroma_url="http://127.0.0.1:9", chroma_timeout_s=2)
    with serve(create_app(no_store)) as url:
        assert probe_exit(url) != 0


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs: continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split()[0], line.partition(" ")[2].strip())
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_copies_and_installs_every_package(pyproject: dict[str, Any]) -> None:
    instructions = dockerfile()
    copied = {
        source.rstrip("/")
        for name, arguments in instructions
        if name == "COPY"
        for source in arguments.split()[:-1]
    }
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()}
    wanted = {name for name in packages if any(fnmatch.fnmatch(name, p) for p in patterns)}
    assert wanted == {"citewise", "api", "ingest", "cli"}
    assert wanted | {"pyproject.toml", "README.md", "offline", "data"} <= copied
    # Package data (the widget script, prompts) ships inside those folders: nothing ignores it.
    ignored = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for package, globs in pyproject["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            files = list((REPO / package).glob(pattern))
            assert files, f"{package}/{pattern}"
            for file in files:
                relative = str(file.relative_to(REPO))
                assert not any(fnmatch.fnmatch(relative, i) for i in ignored), relative
    assert not set(ignored) & copied
    runs = [arguments.split() for name, arguments in instructions if name == "RUN"]
    installed = [
        target.strip("'\"")
        for r in runs
        if r[:3] == ["pip", "install", "--no-cache-dir"]
        for target in r[3:]
    ]
    # the project, with every answer provider's extra
    assert ".[anthropic,gemini]" in installed


def test_the_dockerfile_command_is_a_project_script(pyproject: dict[str, Any]) -> None:
    (command,) = [json.loads(arguments) for name, arguments in instructions_named("CMD")]
    assert command[0] in pyproject["project"]["scripts"]


def instructions_named(name: str) -> list[tuple[str, str]]:
    return [i for i in dockerfile() if i[0] == name]
