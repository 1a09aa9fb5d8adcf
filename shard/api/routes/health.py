"""GET /health: no key needed; says whether the model is loaded yet."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from shard import __version__
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import Health

router = APIRouter()


@router.get("/health", response_model=Health)
async def health(oracle: Annotated[OracleState, Depends(get_oracle)]) -> JSONResponse:
    """200 when serving, 503 while loading or draining, so load balancers can use it."""
    ready = oracle.scheduler is not None and oracle.scheduler.ready
    status: Literal["healthy", "loading", "draining"] = (
        "draining" if oracle.draining else "healthy" if ready else "loading"
    )
    body = Health(status=status, timestamp=datetime.now(UTC).isoformat(), version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if status == "healthy" else 503)
