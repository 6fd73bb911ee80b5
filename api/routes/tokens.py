"""Personal API tokens over the API: your own (any role), everybody's (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from crm_core import platform

from ..context import Actor, json_response, post, read, unit
from ..schemas import TokenCreate, TokenCreated, TokenInfo, TokenList
from .common import After, Limit1000, page

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("", response_model=list[TokenInfo] | TokenList,
            summary="Your tokens (everyone's with all=true, admins); with limit or after, keyset pages "
                    "{data, next_after}")
def list_tokens(request: Request, actor: platform.TokenActor = Actor,
                all: Annotated[bool, Query(description="Every user's tokens (admins)")] = False,
                limit: Limit1000 = None, after: After = None) -> Response:
    if limit is None and after is None:  # the whole list, as before keyset pages existed
        return json_response(read(request, actor, platform.list_tokens, all))
    return json_response(page(read(request, actor, platform.token_page, all, limit or 100, after or platform.FIRST)))


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token for yourself (shown once)")
def create_token(request: Request, body: TokenCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        row, token = platform.create_token(session, actor, actor.id, body.name, read_only=body.read_only,
                                           expires_days=body.expires_days)
        return {"id": row.id, "token": token, "prefix": row.prefix, "read_only": row.read_only,
                "expires_at": row.expires_at}

    # A replay says which token was made but never shows it again (only its digest is stored).
    return post(request, actor, body, work, stored=lambda made: {**made, "token": ""})


@router.delete("/{token_id}", status_code=204, summary="Revoke a token (yours, or anyone's for admins)")
def revoke_token(request: Request, token_id: Annotated[int, Path(ge=1, le=2**62)],
                 actor: platform.TokenActor = Actor) -> Response:
    with unit(request) as session:
        platform.revoke_token(session, actor, token_id)
    return Response(status_code=204)
