"""``/v1/packages``: upload code a task ships (a zipped folder, a wheel), kept by its sha256
in the result store and named in a task's ``runtime_env`` by the reference this returns."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from prsm.api.errors import error_responses
from prsm.api.tasks import PackageOut
from prsm.domain.errors import InvalidRequest, StoreUnavailable
from prsm.domain.runtime_env import PACKAGE
from prsm.serve.deps import Deps, SkillsWriter

router = APIRouter(prefix="/v1/packages", tags=["skills"],
                   responses=error_responses(401, 403, 413, 422, 503))  # fmt: skip

FILE_NAME = PACKAGE.pattern.split("/", 1)[1].rstrip("$)").lstrip("(")


@router.post("", status_code=201, response_model=PackageOut,
             summary="Upload a package (.zip or .whl) for a task's runtime_env")  # fmt: skip
async def upload(
    request: Request,
    principal: SkillsWriter,
    deps: Deps,
    filename: Annotated[str, Query(pattern=f"^{FILE_NAME}$", description="Its file name")],
) -> PackageOut:
    if not filename.endswith((".zip", ".whl")):
        raise InvalidRequest("a package is a .zip (a folder) or a .whl (a wheel)")
    if deps.blobs is None:
        raise StoreUnavailable("this gateway has no result store")
    body = await request.body()
    if not body:
        raise InvalidRequest("the package is empty")
    digest, size = await asyncio.to_thread(deps.blobs.put, [body], "/" + filename)
    return PackageOut(ref=f"{digest}/{filename}", bytes=size)
