"""Liveness and readiness, for load balancers and orchestrators; no API key needed."""

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.web.dependencies import DatabaseDep, EvaluatorDep
from service.web.schemas import Health, Readiness

router = APIRouter(tags=["health"])


# The models document the answers (response_model=None: the dicts are sent as they are, unchecked).
@router.get("/health", summary="Liveness: the process answers; needs no API key", response_model=None,
            responses={200: {"model": Health, "description": "The process answers."}})
def health() -> dict[str, str]:
    return {"status": "ok"}


# Load balancers probe with HEAD: the same answer without a body (the server leaves it out).
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


@router.get(
    "/health/ready",
    summary="Readiness: the database answers and the rules are loaded (503 otherwise); needs no API key",
    response_model=None,
    responses={200: {"model": Readiness, "description": "Ready: the database answers and the rules are loaded."},
               503: {"model": Readiness, "description": "Not ready: the checks say what is not."}},
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
