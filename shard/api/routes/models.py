"""GET /models and /models/{id}: the GGUF's name plus every --served-model-name alias."""

from typing import Annotated

from fastapi import APIRouter, Depends

from shard.api.auth import keyed
from shard.api.errors import KEYED, error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import ModelCard, ModelList
from shard.api.unicode_bodies import UnicodeCheckedRoute

router = APIRouter(route_class=UnicodeCheckedRoute, dependencies=[Depends(keyed("system"))])


@router.get("/models", responses=error_responses(*KEYED))
async def list_models(oracle: Annotated[OracleState, Depends(get_oracle)]) -> ModelList:
    return ModelList(
        data=[ModelCard(id=name, created=oracle.started) for name in oracle.model_names]
    )


@router.get("/models/{model_id:path}", responses=error_responses(404, *KEYED))
async def get_model(
    model_id: str, oracle: Annotated[OracleState, Depends(get_oracle)]
) -> ModelCard:
    return ModelCard(id=oracle.resolve_model(model_id), created=oracle.started)
