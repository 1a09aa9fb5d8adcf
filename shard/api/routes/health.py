"""GET (or HEAD, for uptime monitors) /health: no key needed; says whether the model is
loaded yet."""

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from shard import __version__
from shard.api.errors import error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import Health
from shard.api.unicode_bodies import UnicodeCheckedRoute

router = APIRouter(route_class=UnicodeCheckedRoute)


@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=Health, responses=error_responses(503))
async def health(oracle: Annotated[OracleState, Depends(get_oracle)]) -> JSONResponse:
    """200 when serving, 503 while loading or draining, so load balancers can use it."""
    ready = oracle.engine is not None and oracle.engine.ready
    status: Literal["healthy", "loading", "draining"] = (
        "draining" if oracle.draining else "healthy" if ready else "loading"
    )
    body = Health(status=status, timestamp=int(time.time()), version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if status == "healthy" else 503)
