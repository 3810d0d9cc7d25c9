"""Server-sent events the way OpenAI sends them: `data: {json}\n\n` per event, optionally `data: [DONE]`.

Once the first event is out the status is 200, so an error mid-stream goes out as one more
event carrying OpenAI's error envelope (the openai client raises APIError on it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cascade.types import CascadeError

logger = logging.getLogger(__name__)

Event = BaseModel | dict


def encode_event(event: Event) -> str:
    """One SSE frame; a model keeps exactly the fields it was built with (OpenAI's nulls included)."""
    data = event.model_dump_json(exclude_unset=True) if isinstance(event, BaseModel) else json.dumps(event)
    return f"data: {data}\n\n"


def _error_event(exc: BaseException) -> str:
    if isinstance(exc, CascadeError):
        info = {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": None}
    else:
        logger.error("stream failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        info = {"message": "internal server error", "type": "internal_error", "param": None, "code": None}
    return encode_event({"error": info})


async def _frames(events: AsyncIterator[Event], done: bool) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield encode_event(event)
    except Exception as exc:  # noqa: BLE001 - the status is already sent: report in-band
        yield _error_event(exc)
        return
    if done:
        yield "data: [DONE]\n\n"


def sse_response(events: AsyncIterator[Event], *, done: bool) -> StreamingResponse:
    """A text/event-stream response over `events`; `done` ends it with OpenAI's `data: [DONE]` (chat does,
    transcription streams end with their `transcript.text.done` event)."""
    return StreamingResponse(_frames(events, done), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
