"""Webhook subscriptions (admins): which URL hears which events, and the log of deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import platform, webhooks

from ..context import Actor, etag, if_match, json_response, post, precondition, read, unit
from ..schemas import Strict
from .common import After, Id, Limit500, page

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
EventName = Annotated[str, Field(max_length=64)]


class SubscriptionCreate(Strict):
    url: str = Field(max_length=2000)
    events: list[EventName] = Field(min_length=1, max_length=20, description=", ".join(webhooks.WEBHOOK_EVENTS))


class SubscriptionUpdate(Strict):
    url: str | None = Field(None, max_length=2000)
    events: list[EventName] | None = Field(None, min_length=1, max_length=20)
    is_active: bool | None = None


@router.get("", summary="Subscriptions")
def list_subscriptions(request: Request, actor: platform.TokenActor = Actor) -> Response:
    return json_response({"data": read(request, actor, webhooks.list_subscriptions)})


@router.post("", status_code=201, summary="Subscribe a URL to events; the signing secret is shown once")
def create_subscription(request: Request, body: SubscriptionCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made, secret = webhooks.create_subscription(session, actor, body.url, body.events)
        return {**made, "secret": secret}

    return post(request, actor, body, work, headers=lambda s: {"ETag": etag(s["version"])},
                stored=lambda made: {**made, "secret": ""})


@router.get("/{subscription_id}", summary="A subscription")
def get_subscription(request: Request, subscription_id: Id, actor: platform.TokenActor = Actor) -> Response:
    found = read(request, actor, webhooks.get_subscription, subscription_id)
    return json_response(found, headers={"ETag": etag(found["version"])})


@router.patch("/{subscription_id}", summary="Change URL, events or pause (If-Match required)")
def update_subscription(request: Request, subscription_id: Id, body: SubscriptionUpdate,
                        actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)
    with precondition(), unit(request) as session:
        found = webhooks.update_subscription(session, actor, subscription_id, version,
                                             **body.model_dump(exclude_unset=True))
    return json_response(found, headers={"ETag": etag(found["version"])})


@router.delete("/{subscription_id}", status_code=204, summary="Unsubscribe")
def delete_subscription(request: Request, subscription_id: Id, actor: platform.TokenActor = Actor) -> Response:
    with unit(request) as session:
        webhooks.delete_subscription(session, actor, subscription_id)
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", summary="Deliveries with attempts and response codes, newest first "
            "(keyset pages)")
def deliveries(request: Request, subscription_id: Id, actor: platform.TokenActor = Actor, limit: Limit500 = None,
               after: After = None) -> Response:
    return json_response(page(read(request, actor, webhooks.list_deliveries, subscription_id, limit or 50,
                                   after or platform.FIRST)))
