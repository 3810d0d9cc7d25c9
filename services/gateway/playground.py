"""The web playground at `/`: a static page plus the little it needs to know about this gateway.

No build step and nothing fetched from the internet: the page, its script and its
style are files beside this module. The page itself is public (a browser cannot
attach a bearer token to a navigation); the API calls it makes carry the key the
user types in, so the API key protects the same things it always does.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from cascade import models

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

router = APIRouter(tags=["playground"], include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"])


@router.get("/playground/{name}")
async def asset(name: str) -> FileResponse:
    path = STATIC / name
    if path.suffix not in (".js", ".css") or path.parent != STATIC or not path.is_file():
        raise HTTPException(404, f"no playground asset {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix])


@router.get("/playground-config")
async def config(request: Request) -> dict:
    """Defaults and choices for the form: bundled Whisper models, limits, whether a key is needed."""
    settings = request.app.state.settings
    svc = settings.service
    whisper = [r["name"] for r in models.listing(settings.home) if r["kind"] == "whisper" and r["status"] == "installed"]
    return {
        "models": whisper,
        "default_model": settings.asr.model,
        "n_best": settings.asr.n_best,
        "max_upload_mb": svc.max_upload_mb,
        "api_key_required": svc.api_key is not None,
        "llm": "remote" if svc.llm_url else "in-process",
        "tts": "remote" if svc.tts_url else "in-process",
    }
