"""Optional bearer API key: when ServiceSettings.api_key is set, every /v1 route requires it."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request


def require_api_key(request: Request) -> None:
    """401 unless `Authorization: Bearer <key>` matches the configured key (constant-time compare)."""
    expected = request.app.state.settings.service.api_key
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(token.strip().encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
