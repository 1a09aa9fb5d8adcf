"""GET /dashboard: one page from the oracle itself, with no build step and no external assets.
It asks for a key, keeps it in the tab's session storage, and reads the JSON API with it."""

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()
PAGE = files("shard.api").joinpath("dashboard.html").read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    # no key here: the page asks for one and sends it only in its API calls' headers
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})
