"""Knowledge bases and their documents over HTTP (admin keys only): list, show, delete.

The work is ``ingest.management``'s, the same the ``citewise kb`` and ``citewise docs`` commands
do, run off the event loop. Sources are shown by folder name only: no absolute server path
leaves the service.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.security import AdminCaller
from citewise.threads import run_blocking
from citewise.wiring import Services
from ingest.management import MAX_PAGE, Management

router = APIRouter(route_class=TextRoute, prefix="/v1/kbs", tags=["knowledge bases"])

DEFAULT_PAGE = 100


class SourceInfo(BaseModel):
    name: str = Field(description="The source's name (a folder ingested into the knowledge base).")
    folder: str = Field(description="The folder's own name (never its path on the server).")


class KnowledgeBaseInfo(BaseModel):
    name: str
    status: str = Field(description="`ready`, or `deleting` while a delete is unfinished.")
    sources: list[SourceInfo]
    documents: int
    chunks: int
    embedding_model: str | None
    corpus_version: str | None = Field(
        description="The published BM25 generation: what keys the answer cache."
    )
    last_ingest_at: float | None = Field(description="Unix time the last ingest finished.")


class KnowledgeBaseList(BaseModel):
    knowledge_bases: list[KnowledgeBaseInfo]


class DeletedKnowledgeBase(BaseModel):
    kb: str
    deleted: bool
    documents: int
    chunks: int
    answer_cache: str = Field(
        description="`retired`, `none` (no Redis) or `unreachable` (Redis failed; the "
        "corpus version is gone all the same, so no cached answer of it is looked up)."
    )


class DocumentInfo(BaseModel):
    id: str = Field(description="Stable short id: sha256(kb, NUL, path), 16 hex digits.")
    source: str = Field(description="The name of the source the document came from.")
    path: str = Field(description="The document's key: what citations call `source`.")
    title: str | None
    chunks: int
    bytes: int | None
    content_hash: str | None = Field(description="sha256 of the file as last stored.")
    ingested_at: float | None
    status: str = Field(description="`ok`, `pending`, `failed` (see `error`) or `deleting`.")
    error: str | None = Field(description="Why the file failed the last time it was read.")


class DocumentList(BaseModel):
    kb: str
    documents: list[DocumentInfo]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ChunkInfo(BaseModel):
    chunk_id: str
    chunk_index: int | None
    text: str
    metadata: dict[str, Any]


class DocumentDetail(BaseModel):
    document: DocumentInfo
    chunks: list[ChunkInfo]


class DeletedDocument(BaseModel):
    kb: str
    deleted: DocumentInfo
    chunks_deleted: int
    corpus_version: str | None
    answer_cache: str


def _management(services: Services) -> Management:
    return Management(services.settings, services.store, services.retriever.lexical, services.redis)


@router.get("", response_model=KnowledgeBaseList)
async def list_knowledge_bases(services: ServicesDep, _: AdminCaller) -> dict[str, Any]:
    """Every knowledge base: sources, documents, chunks, model, corpus version, last ingest."""
    found = await run_blocking(_management(services).knowledge_bases)
    for kb in found:
        kb["sources"] = [{"name": s["name"], "folder": s["folder"]} for s in kb["sources"]]
    return {"knowledge_bases": found}


@router.delete("/{kb}", response_model=DeletedKnowledgeBase)
async def delete_knowledge_base(kb: str, services: ServicesDep, _: AdminCaller) -> dict[str, Any]:
    """Delete a knowledge base whole: chunks, BM25 index, manifest rows, uploads, cached answers.

    Crash-safe: a delete cut short leaves it whole or gone, and the next delete (or ingest)
    finishes it. 409 `kb_busy` while an ingest of it runs.
    """
    return await run_blocking(_management(services).delete_knowledge_base, kb)


@router.get("/{kb}/documents", response_model=DocumentList)
async def list_documents(
    kb: str,
    services: ServicesDep,
    _: AdminCaller,
    source: str | None = Query(default=None, description="Only this source (its name)."),
    prefix: str | None = Query(default=None, description="Only paths starting with this."),
    limit: int = Query(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(default=None, description="`next_cursor` of the last page."),
) -> dict[str, Any]:
    """The documents of a knowledge base in path order, a page at a time."""
    page = await run_blocking(
        _management(services).documents,
        kb,
        source=source,
        prefix=prefix,
        limit=limit,
        cursor=cursor,
    )
    return {"kb": kb, "documents": page.documents, "next_cursor": page.next_cursor}


@router.get("/{kb}/documents/{doc_id}", response_model=DocumentDetail)
async def show_document(
    kb: str, doc_id: str, services: ServicesDep, _: AdminCaller
) -> dict[str, Any]:
    """One document's record and its chunks in order, text included."""
    return await run_blocking(_management(services).document, kb, doc_id)


@router.delete("/{kb}/documents/{doc_id}", response_model=DeletedDocument)
async def delete_document(
    kb: str, doc_id: str, services: ServicesDep, _: AdminCaller
) -> dict[str, Any]:
    """Delete one document: its chunks and manifest row; the BM25 index is published anew, so
    the corpus version changes and answers cached under the old one are never served again.

    The file itself is not touched: a later ingest of its folder adds it again if it is there.
    """
    return await run_blocking(_management(services).delete_document, kb, doc_id=doc_id)
