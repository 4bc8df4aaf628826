"""Liveness and readiness, for load balancers and orchestrators; no API key needed."""

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.web.dependencies import DatabaseDep, EvaluatorDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers; needs no API key")
def health() -> dict[str, str]:
    return {"status": "ok"}


# Load balancers probe with HEAD: the same answer without a body (the server leaves it out).
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


@router.get(
    "/health/ready",
    summary="Readiness: the database answers and the rules are loaded (503 otherwise); needs no API key",
    responses={503: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def ready(db: DatabaseDep, evaluator: EvaluatorDep) -> JSONResponse:
    checks: dict[str, Any] = {
        "database": "ok" if await run_in_threadpool(db.is_ready) else "unavailable",
        "rules": "ok" if evaluator.catalog.versions else "not loaded",
    }
    is_ready = all(state == "ok" for state in checks.values())
    return JSONResponse(
        {"status": "ready" if is_ready else "not_ready", "checks": checks}, status_code=200 if is_ready else 503
    )
