"""Shapes shared by the routers: a page of a list, ids in paths, paging parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from crm_core import platform

Id = Annotated[int, Path(ge=1, le=2**62)]
PageNumber = Annotated[int, Query(ge=1, le=10**7)]
PageSize = Annotated[int, Query(ge=1, le=500)]


def page(result: platform.Page) -> dict[str, Any]:
    return {"data": result.rows, "total": result.total, "page": result.page, "page_size": result.page_size}
