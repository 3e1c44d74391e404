"""Who the client is behind a proxy: X-Forwarded-For is believed from CITEWISE_TRUSTED_PROXIES
only, and only an IP address ever becomes the client (and a rate-limit key)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.proxies import ForwardedFor
from citewise.settings import Settings
from tests.answer_helpers import free_socket
from tests.cli import citewise_env, command


def seen_by_the_app(trusted: list[str], peer: str, *headers: tuple[str, str]) -> tuple[Any, str]:
    """The client and scheme an app behind ``ForwardedFor`` sees for one request."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"], seen["scheme"] = scope["client"], scope["scheme"]

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 4242),
        "headers": [(n.lower().encode(), v.encode("latin-1")) for n, v in headers],
    }
    asyncio.run(ForwardedFor(app, trusted)(scope, None, None))  # type: ignore[arg-type]
    return seen["client"][0], seen["scheme"]


def xff(value: str) -> tuple[str, str]:
    return ("X-Forwarded-For", value)


def test_forwarded_for_is_believed_from_trusted_proxies_only() -> None:
    # Default: no proxy is trusted, loopback included.
    assert seen_by_the_app([], "127.0.0.1", xff("203.0.113.9")) == ("127.0.0.1", "http")
    assert seen_by_the_app(["10.0.0.0/8"], "127.0.0.1", xff("203.0.113.9"))[0] == "127.0.0.1"
    # A trusted proxy: the rightmost hop that is not a trusted proxy is the client.
    trusted = ["127.0.0.1", "10.0.0.0/8"]
    assert seen_by_the_app(trusted, "127.0.0.1", xff("203.0.113.9"))[0] == "203.0.113.9"
    chain = xff("198.51.100.1, 203.0.113.9, 10.1.2.3")  # the client made up the first hop
    assert seen_by_the_app(trusted, "127.0.0.1", chain)[0] == "203.0.113.9"
    two = (xff("198.51.100.1"), xff("203.0.113.9:5555"))  # two header lines, one with a port
    assert seen_by_the_app(trusted, "127.0.0.1", *two)[0] == "203.0.113.9"
    assert seen_by_the_app(trusted, "127.0.0.1", xff("[2001:db8::7]:80"))[0] == "2001:db8::7"
    # A hop that is no address ends the walk at the last address: nothing made up gets through.
    for made_up in ("evil", "", "203.0.113.9 OR 1=1", "1.2.3.4.5", "x" * 300):
        assert seen_by_the_app(trusted, "127.0.0.1", xff(made_up))[0] == "127.0.0.1"
    assert seen_by_the_app(trusted, "127.0.0.1", xff("203.0.113.9, evil, 10.0.0.1"))[0] == (
        "10.0.0.1"
    )
    # The scheme, from a trusted proxy only.
    proto = ("X-Forwarded-Proto", "https")
    assert seen_by_the_app(trusted, "127.0.0.1", proto)[1] == "https"
    assert seen_by_the_app([], "127.0.0.1", proto)[1] == "http"
    assert seen_by_the_app(trusted, "127.0.0.1", ("X-Forwarded-Proto", "gopher"))[1] == "http"


@pytest.fixture
def proxied(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> Iterator[Callable[..., TestClient]]:
    """The app with a 1/minute token-exchange limit per IP, reached from ``peer``."""
    clients: list[TestClient] = []

    def make(peer: str, **overrides: Any) -> TestClient:
        settings = make_settings(
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            rate_limit_widget_per_ip="1/minute",
            **overrides,
        )
        client = TestClient(create_app(settings), client=(peer, 5000))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def exchange(client: TestClient, forwarded: str | None = None) -> int:
    headers = {"Origin": "https://docs.example.com"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    response = client.post("/v1/widget/token", json={"widget_id": "nope"}, headers=headers)
    return response.status_code  # 404: no such widget, once the IP's limit let it through


def test_limits_follow_the_forwarded_client_only_behind_a_trusted_proxy(
    proxied: Callable[..., TestClient],
) -> None:
    direct = proxied("127.0.0.1")
    assert exchange(direct, "203.0.113.1") == 404
    assert exchange(direct, "203.0.113.2") == 429  # the same loopback peer: no dodging

    behind = proxied("10.0.0.5", trusted_proxies="10.0.0.0/24")
    assert exchange(behind, "203.0.113.1") == 404
    assert exchange(behind, "203.0.113.2") == 404  # another client of the proxy
    assert exchange(behind, "203.0.113.1") == 429
    # Made-up strings are no keys: both count against the proxy's own address.
    assert exchange(behind, "evil-1") == 404
    assert exchange(behind, "evil-2") == 429


def test_the_client_address_is_an_ip_or_unknown(proxied: Callable[..., TestClient]) -> None:
    # A peer that is no IP address (a unix socket, a test client) is one key, "unknown".
    client = proxied("testclient")
    assert exchange(client) == 404
    assert exchange(client, "203.0.113.1") == 429


def test_citewise_serve_ignores_forwarded_for_from_loopback_by_default(
    tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    # uvicorn on its own believes X-Forwarded-For from 127.0.0.1: a local proxy (or anyone on
    # the machine) could pick a new client address, and a new rate-limit bucket, per request.
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = citewise_env(
        tmp_path / "home",
        cache_dir,
        CITEWISE_REDIS_URL=redis_url,
        CITEWISE_REDIS_PREFIX=redis_prefix,
        CITEWISE_RATE_LIMIT_WIDGET_PER_IP="2/minute",
        NO_PROXY="127.0.0.1",
    )
    server = subprocess.Popen(
        command("serve", "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "citewise serve did not start"
            time.sleep(0.5)
        codes = [
            httpx.post(
                f"{url}/v1/widget/token",
                json={"widget_id": "nope"},
                headers={
                    "Origin": "https://docs.example.com",
                    "X-Forwarded-For": f"198.51.100.{n}",
                },
                timeout=30,
            ).status_code
            for n in range(3)
        ]
        assert codes == [404, 404, 429]
    finally:
        server.terminate()
        server.communicate(timeout=60)  # reads and closes stderr
