from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness; needs no API key")
def health() -> dict[str, str]:
    return {"status": "ok"}
