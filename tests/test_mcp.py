"""The MCP server through the SDK's own client: over stdio against ``citewise mcp`` run as a
process, and over streamable HTTP against the app served by uvicorn, behind a query key."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import CallToolResult, TextContent, Tool
from pydantic import AnyUrl

from api.errors import INTERNAL_MESSAGE
from api.main import create_app
from citewise import __version__
from citewise.settings import Settings
from tests.answer_helpers import PARROTS_KB, ExplodingGenerator, serve
from tests.cli import citewise_env, command
from tests.conftest import REPO

BASE_URL = "https://help.example.com/"
KEY = "mcp-test-query-key-0123456789"
JWT_SECRET = "the-identity-providers-shared-secret-for-hs256-tokens-0123456789"
ISSUER = "https://id.example.test/"
HOTEL = "What is the hotel limit per night?"
INVITATION = "How long is an invitation valid?"
HANDBOOK = "account/admin-handbook.docx"
EXPENSE_POLICY = "expenses/expense-policy-template.docx"


class Connected:
    """An initialised ``ClientSession``, driven from synchronous tests through a portal."""

    def __init__(self, portal: BlockingPortal, session: ClientSession, server: Any) -> None:
        self.portal = portal
        self.session = session
        self.server = server  # the initialize result's serverInfo

    def tools(self) -> list[Tool]:
        return self.portal.call(self.session.list_tools).tools

    def call(self, name: str, **arguments: Any) -> CallToolResult:
        return self.portal.call(partial(self.session.call_tool, name, arguments))

    def resources(self) -> list[str]:
        return [str(r.uri) for r in self.portal.call(self.session.list_resources).resources]

    def read(self, uri: str) -> Any:
        result = self.portal.call(self.session.read_resource, AnyUrl(uri))
        [content] = result.contents
        return json.loads(getattr(content, "text", ""))


Transport = Callable[[], AbstractAsyncContextManager[Sequence[Any]]]


@contextmanager
def connected(transport: Transport) -> Iterator[Connected]:
    @asynccontextmanager
    async def session() -> AsyncIterator[tuple[ClientSession, Any]]:
        async with transport() as (read, write, *_), ClientSession(read, write) as session:
            with anyio.fail_after(120):  # a deadline for start-up, not a pause
                started = await session.initialize()
            yield session, started.serverInfo

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(session()) as s:
        yield Connected(portal, *s)


def http_client(url: str, key: str | None) -> Transport:
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    @asynccontextmanager
    async def transport() -> AsyncIterator[Sequence[Any]]:
        async with (
            httpx.AsyncClient(headers=headers, timeout=60) as client,
            streamable_http_client(f"{url}/mcp", http_client=client) as streams,
        ):
            yield streams

    return transport


def text(result: CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text


@pytest.fixture(scope="module")
def served_home(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample home: a server process opens the store of its own."""
    copy = tmp_path_factory.mktemp("mcp") / "home"
    shutil.copytree(home, copy)
    return copy


@pytest.fixture(scope="module")
def settings(served_home: Path, cache_dir: Path) -> Settings:
    return Settings(
        home=served_home,
        cache_dir=cache_dir,
        redis_url="off",
        query_keys=[KEY],
        # End users' tokens too: an identity provider's, granting some knowledge bases.
        jwt_secret=JWT_SECRET,
        jwt_audience="citewise",
        jwt_issuer=ISSUER,
        kb_base_urls={"default": BASE_URL},
        # The server's access lines may come after a client has its answer, when pytest has
        # stopped capturing: not in the test's output.
        log_level="warning",
    )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module", params=["stdio", "http"])
def mcp(
    request: pytest.FixtureRequest,
    served_home: Path,
    cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Connected]:
    """One session per transport, shared by the module's tests."""
    if request.param == "http":
        url = request.getfixturevalue("server")
        with connected(http_client(url, KEY)) as session:
            yield session
        return
    env = citewise_env(
        served_home,
        cache_dir,
        CITEWISE_REDIS_URL="off",
        CITEWISE_KB_BASE_URLS=json.dumps({"default": BASE_URL}),
    )
    executable, *args = command("mcp")
    parameters = StdioServerParameters(command=executable, args=args, env=env, cwd=REPO)
    log = tmp_path_factory.mktemp("mcp-stdio") / "stderr.log"
    with log.open("w") as errlog, connected(lambda: stdio_client(parameters, errlog)) as session:
        yield session


# --- both transports ------------------------------------------------------------------------


def test_the_server_introduces_itself(mcp: Connected) -> None:
    assert (mcp.server.name, mcp.server.version) == ("citewise", __version__)


def test_the_tools_say_when_to_call_which(mcp: Connected) -> None:
    tools = {tool.name: tool for tool in mcp.tools()}
    assert set(tools) == {"search", "ask"}
    search, ask = tools["search"], tools["ask"]
    assert "passages" in (search.description or "") and "`ask`" in (search.description or "")
    assert "citations" in (ask.description or "") and "`search`" in (ask.description or "")
    assert search.inputSchema["required"] == ["query"]
    assert set(search.inputSchema["properties"]) == {"query", "kb", "k", "filters"}
    assert ask.inputSchema["required"] == ["question"]
    assert all(t.annotations and t.annotations.readOnlyHint for t in tools.values())


def test_search_finds_passages_with_deep_links(mcp: Connected) -> None:
    result = mcp.call("search", query=HOTEL, k=3)
    assert not result.isError, text(result)
    hits = (result.structuredContent or {})["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["source"] == EXPENSE_POLICY and "150 EUR per night" in hits[0]["text"]
    assert hits[0]["url"].startswith(f"{BASE_URL}{EXPENSE_POLICY}#")
    assert json.loads(text(result)) == result.structuredContent


def test_search_takes_filters(mcp: Connected) -> None:
    result = mcp.call("search", query="refund", k=10, filters={"source_prefix": "billing/"})
    hits = (result.structuredContent or {})["hits"]
    assert hits and all(h["source"].startswith("billing/") for h in hits)


def test_ask_answers_with_verified_citations(mcp: Connected) -> None:
    result = mcp.call("ask", question=INVITATION)
    assert not result.isError, text(result)
    answer = result.structuredContent or {}
    assert "7 days" in answer["answer"] and not answer["refused"]
    assert answer["citations"] and {c["source"] for c in answer["citations"]} == {HANDBOOK}
    assert all(c["supported"] for c in answer["citations"])
    assert any("An invitation is valid for 7 days" in c["quote"] for c in answer["citations"])
    assert answer["citations"][0]["url"].startswith(f"{BASE_URL}{HANDBOOK}#")


def test_ask_names_another_knowledge_base(mcp: Connected) -> None:
    answer = mcp.call("ask", question="What is the office parrot called?", kb=PARROTS_KB)
    assert "Captain Biscuit" in (answer.structuredContent or {})["answer"]


def test_the_knowledge_bases_are_resources(mcp: Connected) -> None:
    assert {"citewise://kb/default", f"citewise://kb/{PARROTS_KB}"} <= set(mcp.resources())
    default = mcp.read("citewise://kb/default")
    assert default["name"] == "default" and default["documents"] == 27 and default["chunks"] > 27


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("ask", {"question": INVITATION, "kb": "missing"}, "knowledge base 'missing' does not"),
        ("ask", {"question": "   "}, "the question is empty"),
        ("ask", {"question": INVITATION, "kb": "No Such"}, "invalid knowledge base name"),
        ("search", {"query": "refund", "k": 0}, "k must be between 1 and 100"),
        ("search", {"query": "refund", "k": "many"}, "k: Input should be a valid integer"),
        ("search", {"query": "refund", "filters": {"colour": "red"}}, "unknown filter 'colour'"),
    ],
)
def test_mistakes_are_tool_errors_with_our_message(
    mcp: Connected, tool: str, arguments: dict[str, Any], message: str
) -> None:
    result = mcp.call(tool, **arguments)
    assert result.isError
    assert text(result).startswith(message)
    assert "Error executing tool" not in text(result) and "Traceback" not in text(result)


# --- over HTTP: the app's keys, limits and admission ----------------------------------------


def initialize(url: str, **headers: str) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    return httpx.post(f"{url}/mcp", json=body, headers=accept | headers, timeout=30)


def test_the_mount_refuses_a_missing_or_wrong_key_with_our_401(server: str) -> None:
    missing = initialize(server)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = initialize(server, Authorization="Bearer not-the-key-at-all-0000")
    assert (
        wrong.status_code == 401 and wrong.json()["error"]["message"] == "the API key is not valid"
    )
    assert initialize(server, Authorization=f"Bearer {KEY}").status_code == 200
    assert initialize(server, **{"X-API-Key": KEY}).status_code == 200
    with pytest.raises(ExceptionGroup) as refused, connected(http_client(server, None)):
        pass  # the SDK's client gives up on the 401
    assert refused.value.subgroup(
        lambda e: isinstance(e, httpx.HTTPStatusError) and e.response.status_code == 401
    )


def test_the_mount_is_admitted_as_a_route_is(server: str) -> None:
    key = {"Authorization": f"Bearer {KEY}"}
    other_site = initialize(
        server, **key, Origin="https://evil.example", **{"Sec-Fetch-Site": "cross-site"}
    )
    assert other_site.status_code == 403
    assert other_site.json()["error"]["code"] == "origin_not_allowed"
    as_text = httpx.post(
        f"{server}/mcp", content=b"{}", headers=key | {"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    assert httpx.get(f"{server}/mcp", headers=key).status_code == 405
    assert 'route="/mcp"' in httpx.get(f"{server}/metrics").text  # logged and measured by name


def user_token(**claims: Any) -> str:
    now = int(time.time())
    issued = {"sub": "ada", "iss": ISSUER, "aud": "citewise", "iat": now, "exp": now + 600}
    return jwt.encode(issued | claims, JWT_SECRET, algorithm="HS256")


def test_a_users_token_reaches_the_knowledge_bases_it_grants_only(server: str) -> None:
    with connected(http_client(server, user_token(kbs=[PARROTS_KB]))) as session:
        assert session.resources() == [f"citewise://kb/{PARROTS_KB}"]
        parrot = session.call("ask", question="What is the office parrot called?")  # no kb
        assert "Captain Biscuit" in (parrot.structuredContent or {})["answer"]
        for tool, arguments in [
            ("ask", {"question": INVITATION, "kb": "default"}),
            ("search", {"query": INVITATION, "kb": "default"}),
        ]:
            denied = session.call(tool, **arguments)
            assert denied.isError
            assert text(denied) == "your token does not grant knowledge base 'default'"
        with pytest.raises(McpError, match="does not grant knowledge base 'default'"):
            session.read("citewise://kb/default")


def test_ask_counts_as_an_ask_and_failures_do_not_leak(
    settings: Settings, redis_url: str, redis_prefix: str
) -> None:
    limited = settings.replace(
        redis_url=redis_url, redis_prefix=redis_prefix, rate_limit_ask_per_key="1/minute"
    )
    app = create_app(limited, generator=ExplodingGenerator())
    with serve(app) as url, connected(http_client(url, KEY)) as session:
        failed = session.call("ask", question=INVITATION)
        assert failed.isError and text(failed) == INTERNAL_MESSAGE
        limited_out = session.call("ask", question=INVITATION)
        assert limited_out.isError
        assert text(limited_out).startswith("rate limit of 1 per 1 minute per API key reached")
        assert not session.call("search", query=HOTEL).isError  # a limit of its own


# --- over stdio ------------------------------------------------------------------------------


def test_a_bad_knowledge_base_name_stops_the_command_before_stdout_is_used(
    tmp_path: Path, cache_dir: Path
) -> None:
    done = subprocess.run(
        command("mcp", "--kb", "No Such"),
        env=citewise_env(tmp_path / "home", cache_dir, CITEWISE_REDIS_URL="off"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "invalid knowledge base name" in done.stderr
