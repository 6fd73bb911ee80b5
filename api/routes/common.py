"""Shapes shared by the routers: a page of a list, ids in paths, paging parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from crm_core import platform

from ..errors import ApiError

Id = Annotated[int, Path(ge=1, le=2**62)]
PageNumber = Annotated[int | None, Query(ge=1, le=10**7, description="A numbered page (from 1); "
                                                                      "or page by keyset with limit and after")]
PageSize = Annotated[int, Query(ge=1, le=500)]
After = Annotated[str | None, Query(max_length=platform.MAX_CURSOR_LENGTH, pattern=r"^[A-Za-z0-9_-]*$",
                                    description="Keyset paging: the next_after of the previous page "
                                                "(empty or absent with limit: the first page)")]


LIMIT_HELP = "Keyset paging: rows per page; the answer is {data, next_after}"
Limit100 = Annotated[int | None, Query(ge=1, le=100, description=LIMIT_HELP)]
Limit200 = Annotated[int | None, Query(ge=1, le=200, description=LIMIT_HELP)]
Limit500 = Annotated[int | None, Query(ge=1, le=500, description=LIMIT_HELP)]
Limit1000 = Annotated[int | None, Query(ge=1, le=1000, description=LIMIT_HELP)]


def paging(page_number: int | None, page_size: int, limit: int | None, after: str | None) -> tuple[int, int, str | None]:
    """(page, rows per page, cursor): numbered pages as before, or keyset pages once `limit` or `after`
    is given (the cursor is then FIRST for the first page)."""
    if limit is None and after is None:
        return page_number or 1, page_size, None
    if page_number is not None:
        raise ApiError(400, "invalid_request_error", "invalid",
                       "Page either by number (page, page_size) or by keyset (limit, after), not both.",
                       param="after")
    return 0, limit or page_size, after or platform.FIRST


def page(result: platform.Page) -> dict[str, Any]:
    """A keyset page is {data, next_after}, as the customers list; a numbered page keeps its total, page
    and page_size and carries next_after too, so a client can switch to keyset paging from it."""
    if result.total is None:
        return {"data": result.rows, "next_after": result.next_after}
    return {"data": result.rows, "total": result.total, "page": result.page, "page_size": result.page_size,
            "next_after": result.next_after}
