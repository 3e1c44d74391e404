"""The host names the service answers to (api/hosts.py): a keyless service answers to localhost
names only, so a page that rebinds its own name to this machine is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.hosts import host_name
from api.main import create_app
from citewise.settings import Settings

ADMIN_KEY = "admin-key-1234567890abcdef"


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TestClient]]:
    """A client of the app with the default hosts (the tests' own "testserver" taken out)."""
    monkeypatch.delenv("CITEWISE_ALLOWED_HOSTS")
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        app = create_app(make_settings(redis_url="off", **overrides))
        client = TestClient(app, base_url="http://localhost:8000")
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def status(client: TestClient, host: str, **headers: str) -> int:
    return client.get("/v1/admin/widgets", headers={"Host": host, **headers}).status_code


def test_a_rebinding_host_name_is_refused_without_keys(
    make_client: Callable[..., TestClient],
) -> None:
    # Before: any Host was served, so a page on evil.example whose name then resolved to
    # 127.0.0.1 read /v1/admin/* as its own origin.
    client = make_client()
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "localhost."):
        assert status(client, host) == 200, host
    for host in ("evil.example:8000", "evil.example", "testserver", "127.0.0.1.evil.example", ""):
        assert status(client, host) == 403, host
    refused = client.post("/v1/admin/cache/flush", json={}, headers={"Host": "evil.example:8000"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "host_not_allowed"
    assert "CITEWISE_ALLOWED_HOSTS" in refused.json()["error"]["message"]


def test_with_keys_any_host_name_is_served_by_default(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(admin_keys=ADMIN_KEY)
    assert status(client, "evil.example", Authorization=f"Bearer {ADMIN_KEY}") == 200
    assert status(client, "evil.example") == 401  # the key is what protects it


def test_allowed_hosts_name_hosts_and_subdomains(make_client: Callable[..., TestClient]) -> None:
    client = make_client(admin_keys=ADMIN_KEY, allowed_hosts="help.example.com, *.example.org")
    key = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert status(client, "help.example.com", **key) == 200
    assert status(client, "docs.example.org:443", **key) == 200
    for host in ("example.org", "localhost", "help.example.com.evil.example"):
        assert status(client, host, **key) == 403, host


def test_a_host_header_is_read_without_its_port() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "[::1]"
    assert host_name("[::1]") == "[::1]"
    assert host_name("example.com.") == "example.com"
    assert host_name("") == ""


def test_allowed_hosts_are_checked_at_start() -> None:
    assert Settings(allowed_hosts="::1, Help.Example.com.").access.hosts == (
        "[::1]",
        "help.example.com",
    )
    for bad in ("http://help.example.com", "help.example.com:443", "a/b", "*help", ","):
        with pytest.raises(ValueError, match="CITEWISE_ALLOWED_HOSTS"):
            Settings(allowed_hosts=bad)
