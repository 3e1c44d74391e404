"""The MCP face: Citewise's search and answers as tools an agent calls, its knowledge bases as
resources it reads. Built with the official SDK's FastMCP; one server per process, over the
same ``Services`` as the HTTP routes.

Two transports serve it: ``citewise mcp`` over stdin/stdout (``cli.mcp_stdio``), for an agent
that starts Citewise itself, and streamable HTTP at ``/mcp`` (``api.mcp_http``), behind the
same API keys and limits as the other endpoints.

The tools are thin: ``search`` is what ``POST /v1/search`` does and ``ask`` what ``POST
/v1/ask`` does (the answer cache included), with the knowledge bases listed as ``/v1/kbs``
lists them (``ingest.management``). A failed call comes back as a tool error (``isError``)
whose text is the message the HTTP API would send (``explain``, the one place errors are
translated for MCP clients); nothing else of an exception leaves the process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import FastMCPError, ResourceError, ToolError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ContentBlock, ToolAnnotations
from mcp.types import Resource as MCPResource
from pydantic import AnyUrl, BaseModel, Field, ValidationError

from api.errors import INTERNAL_MESSAGE, describe
from api.schemas import FilterValue, SearchResponse
from api.security import client_address
from citewise import __version__
from citewise.answer.answerer import Question, hit_record
from citewise.errors import CitewiseError, KnowledgeBaseNotFound, Unauthorized
from citewise.serving.access import Caller
from citewise.serving.rate_limits import Family
from citewise.shapes import Citation
from citewise.threads import run_blocking
from citewise.wiring import Services
from ingest.management import Management

log = logging.getLogger("citewise.mcp")

CALLER = "citewise.caller"  # in an HTTP request's scope: who the key says is calling
KB_URI = "citewise://kb/"
LOCAL = Caller("public")  # over stdio: whoever started the process, as with the CLI
_READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)

INSTRUCTIONS = """Citewise answers from a collection of documents (a knowledge base) and cites
the exact passages. Call `ask` for a direct answer to a question, with citations; call
`search` to find passages to read, quote or link to yourself. Each knowledge base is a
resource (citewise://kb/NAME); tools use {default!r} unless told another."""

SEARCH = """Find the passages of the documents that best match a query, best first. Each hit
has the passage text, its document (`source`, `title`), section `heading`, `page` and a deep
link (`url`) to the passage. Use it to find text to read, quote or link to, to see what the
documents hold on a topic, or to check a detail; it writes no answer. For a direct answer to
a question, use `ask`. Knowledge base: {default!r} unless `kb` names another."""

ASK = """Answer a question from the documents, with citations. The answer carries [n] markers;
each citation gives the supporting quote, its document, heading, page and deep link (`url`),
and `supported` says whether the passage backs the sentences citing it. When the documents do
not hold the answer, `refused` is true: say so rather than guess. Use it for a direct,
cited answer; to read or quote the passages yourself, use `search`. Knowledge base:
{default!r} unless `kb` names another."""

Query = Annotated[str, Field(description="What to look for: a question or a few keywords.")]
AskedQuestion = Annotated[str, Field(description="The question, in a sentence.")]
KnowledgeBase = Annotated[
    str | None,
    Field(description="Knowledge base name; omit for the default. Resources list them."),
]
# The bounds are documented here and checked once, by the core (``checked_k``), whose message
# the caller then gets: pydantic would refuse with its own words first.
HowMany = Annotated[
    int,
    Field(
        description="How many passages, 1-100.", json_schema_extra={"minimum": 1, "maximum": 100}
    ),
]
Filters = Annotated[
    dict[str, FilterValue] | None,
    Field(
        description="Exact metadata matches (`title`, `heading`, `page`, any ingested key), "
        'and `source_prefix` for a folder: {"source_prefix": "billing/"}.'
    ),
]


class CitedAnswer(BaseModel):
    """What ``ask`` returns: the ``/v1/ask`` answer less the passages it was written from
    (their cited spans are in ``citations``; ``search`` reads passages whole)."""

    answer: str = Field(description="The answer, with [n] markers pointing at `citations`.")
    citations: list[Citation]
    refused: bool = Field(description="True when the documents do not hold the answer.")
    answer_id: str = Field(description="The answer's id, for feedback (POST /v1/feedback).")


class CitewiseMCP(FastMCP[Any]):
    """The server: two tools and a resource per knowledge base, over ``services``."""

    def __init__(self, services: Services, default_kb: str | None = None) -> None:
        self.services = services
        self.default_kb = default_kb or services.settings.core.default_kb
        super().__init__(
            name="citewise",
            instructions=INSTRUCTIONS.format(default=self.default_kb),
            # One JSON response per request and no session to keep: any worker process of a
            # deployment can take any request.
            stateless_http=True,
            json_response=True,
            # The app checks the Host (api.hosts) and other sites' pages (api.admission) by
            # the service's settings; the SDK's own check knows only localhost.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        # FastMCP 1.x takes no version and would announce the SDK's own as the server's.
        self._mcp_server.version = __version__
        self.add_tool(
            self.search,
            title="Search the documents",
            description=SEARCH.format(default=self.default_kb),
            annotations=_READ_ONLY,
        )
        self.add_tool(
            self.ask,
            title="Ask the documents",
            description=ASK.format(default=self.default_kb),
            annotations=_READ_ONLY,
        )
        self.resource(
            KB_URI + "{kb}",
            name="knowledge base",
            description="A knowledge base: its documents, passages, sources and last ingest.",
            mime_type="application/json",
        )(self.knowledge_base)

    # --- tools ---------------------------------------------------------------------------

    async def search(
        self, query: Query, kb: KnowledgeBase = None, k: HowMany = 5, filters: Filters = None
    ) -> SearchResponse:
        kb = (await self._caller("search")).knowledge_base(kb, self.default_kb)
        retriever = self.services.retriever
        checked = retriever.query(query, kb=kb, k=k, filters=filters)
        hits = await run_blocking(retriever.search, checked)
        base_url = self.services.settings.answering.kb_base_urls.get(kb, "")
        return SearchResponse(hits=[hit_record(n, h, base_url) for n, h in enumerate(hits, 1)])

    async def ask(self, question: AskedQuestion, kb: KnowledgeBase = None) -> CitedAnswer:
        caller = await self._caller("ask")
        asked = Question(question, caller.knowledge_base(kb, self.default_kb))
        # As /v1/chat/completions: each call stands alone, no server-side conversation.
        answer = (await self.services.asking.ask(asked, owner=caller.owner, converse=False)).whole()
        return CitedAnswer(
            answer=answer.answer,
            citations=answer.citations,
            refused=answer.refused,
            answer_id=answer.answer_id,
        )

    async def _caller(self, family: Family) -> Caller:
        """Who calls: over HTTP the caller its key or end user's token makes it (checked by
        ``api.mcp_http``; a token may grant only some knowledge bases), the call
        counted against the family's limits (the request itself counted as a search, so an
        ask counts as an ask on top, as ``/v1/ask`` would); over stdio, the local user."""
        request = self.get_context().request_context.request
        if request is None:  # stdio: no keys, no limits, as for the CLI
            return LOCAL
        caller = request.scope.get(CALLER)
        if not isinstance(caller, Caller):  # api.mcp_http sets it on every request
            raise Unauthorized("an API key is needed: send 'Authorization: Bearer <key>'")
        if family != "search":
            limiter = self.services.limiter
            await limiter.check(family, "ip", client_address(request.scope))
            if caller.keyed:
                await limiter.check(family, "key", caller.owner)
        return caller

    # --- resources -----------------------------------------------------------------------

    async def knowledge_base(self, kb: str) -> str:
        """The resource ``citewise://kb/{kb}``: what any caller may know of it, as JSON."""
        (await self._caller("search")).knowledge_base(kb, self.default_kb)  # granted to them?
        for found in await self._knowledge_bases():
            if found["name"] == kb:
                return json.dumps(_public(found))
        raise KnowledgeBaseNotFound(f"knowledge base {kb!r} does not exist; ingest it first")

    async def _knowledge_bases(self) -> list[dict[str, Any]]:
        services = self.services
        management = Management(
            services.settings, services.store, services.retriever.lexical, services.redis
        )
        return await run_blocking(management.knowledge_bases)

    # --- the SDK's handlers, with our errors and a resource per knowledge base -----------

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as error:  # the SDK answers it with isError and this message
            raise ToolError(explain(error)) from None

    async def list_resources(self) -> list[MCPResource]:
        try:
            caller = await self._caller("search")
            found = await self._knowledge_bases()
        except Exception as error:
            raise ResourceError(explain(error)) from None
        # As /v1/models: the knowledge bases this caller may use (an end user's token may
        # grant only some).
        mine = [kb for kb in found if kb["status"] == "ready" and caller.may_use(kb["name"])]
        return [*await super().list_resources(), *(_listed(kb) for kb in mine)]

    async def read_resource(self, uri: AnyUrl | str) -> Iterable[ReadResourceContents]:
        try:
            return await super().read_resource(uri)
        except Exception as error:
            raise ResourceError(explain(error)) from None


def explain(error: BaseException) -> str:
    """What an MCP client is told of a failed call. The SDK wraps what a tool or resource
    raised (``ToolError`` from it, ``ValueError`` around it), so the chain is searched:
    Citewise's own errors say what they say, refused arguments are named as the HTTP API
    names a refused body's fields, and the SDK's own refusals (an unknown tool or resource,
    raised with nothing behind them) stand.
    Anything else is logged, and the client told only that."""
    for link in _chain(error):
        if isinstance(link, CitewiseError):
            return str(link)
        if isinstance(link, ValidationError):
            return describe(link)
    if isinstance(error, FastMCPError | ValueError) and len(list(_chain(error))) == 1:
        return str(error)
    log.error("MCP call failed", exc_info=error)
    return INTERNAL_MESSAGE


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _public(kb: dict[str, Any]) -> dict[str, Any]:
    """What any caller may know of a knowledge base (``GET /v1/kbs``, for admins, also shows
    source folders, the embedding model and the corpus version)."""
    return {
        "name": kb["name"],
        "uri": KB_URI + kb["name"],
        "documents": kb["documents"],
        "chunks": kb["chunks"],
        "sources": [source["name"] for source in kb["sources"]],
        "last_ingest_at": kb["last_ingest_at"],
    }


def _listed(kb: dict[str, Any]) -> MCPResource:
    name = kb["name"]
    return MCPResource(
        uri=AnyUrl(KB_URI + name),
        name=name,
        title=f"Knowledge base {name!r}",
        description=f"{kb['documents']} documents in {kb['chunks']} passages.",
        mimeType="application/json",
    )
