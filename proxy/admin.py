"""The admin API: inspect and change the concept list at run time, atomically.

Changes apply to this process only (each replica has its own copy); ``POST /admin/reload`` re-reads
the configured file, which is how a fleet picks up an updated ConfigMap (see deploy/README.md).
Listings never carry inline forget passages (``ConceptList.public_dump``): they are the facts
being forgotten.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from proxy.auth import require_admin
from proxy.protocol import loads_json
from proxy.state import GuardState

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def _state(request: Request) -> GuardState:
    state: GuardState = request.app.state.guard_state
    return state


async def _json(request: Request) -> Any:
    return loads_json(await request.body())


def _listing(state: GuardState) -> dict[str, Any]:
    return state.current_concepts().public_dump()


@router.get("/concepts")
async def list_concepts(request: Request) -> dict[str, Any]:
    return _listing(_state(request))


@router.put("/concepts")
async def replace_concepts(request: Request) -> dict[str, Any]:
    state = _state(request)
    await state.replace_from_json(await _json(request))
    return _listing(state)


@router.post("/concepts", status_code=201)
async def add_concept(request: Request) -> dict[str, Any]:
    state = _state(request)
    await state.add(await _json(request))
    return _listing(state)


@router.delete("/concepts/{concept_id}", status_code=204)
async def delete_concept(concept_id: str, request: Request) -> Response:
    await _state(request).delete(concept_id)
    return Response(status_code=204)


@router.post("/reload")
async def reload_concepts(request: Request) -> JSONResponse:
    state = _state(request)
    guard = await state.reload_from_file()
    return JSONResponse({"status": "reloaded", "concepts": len(guard.concepts.concepts)})
