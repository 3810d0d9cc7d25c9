"""Dependencies of the audio routes: the upload, to be decoded under the service's limits (STYLE rule 9).

The dependency only reads the bytes (already capped by the upload-size middleware);
decoding happens later, inside the model's admission slot (AsrServing.transcribe), so a
burst of uploads cannot decode in parallel past the queue, and it stops at max_audio_s.
"""

from __future__ import annotations

import threading
from typing import Annotated

import numpy as np
from fastapi import Depends, File, UploadFile

from services.common.deps import SettingsDep


class PendingAudio:
    """An encoded upload and the duration cap it will be decoded under."""

    def __init__(self, data: bytes, max_duration_s: float):
        self.data, self.max_duration_s = data, max_duration_s

    def decode(self, cancel: threading.Event | None = None) -> np.ndarray:
        """16 kHz mono float32; AudioDecodeError -> 415, empty -> 400, above the cap -> 413 (typed errors)."""
        from cascade.audio import load_audio

        return load_audio(self.data, max_duration_s=self.max_duration_s, cancel=cancel)


async def pending_audio(file: Annotated[UploadFile, File(description="The audio file")], settings: SettingsDep) -> PendingAudio:
    cap = min(settings.service.max_audio_s, settings.asr.max_duration_s)
    return PendingAudio(await file.read(), cap)


DecodedAudio = Annotated[PendingAudio, Depends(pending_audio)]
"""The upload of an audio route (the name is kept for the routes; it is decoded in the slot)."""
