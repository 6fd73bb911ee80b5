"""/health for load balancers: the process answers and the database is reachable."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from crm_core import platform

from ..errors import error_response

router = APIRouter(tags=["system"])


@router.get("/health", summary="Liveness and database check", responses={503: {"description": "Database down"}})
def health(request: Request) -> JSONResponse:
    try:
        with platform.unit_of_work(request.app.state.sessions) as session:
            platform.latest_order_date(session)
    except platform.DomainError:
        return error_response(503, "api_error", "database_unreachable", "The database cannot be reached.")
    return JSONResponse({"status": "ok", "database": "ok"})
