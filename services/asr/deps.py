"""Dependencies of the audio routes: the upload decoded under the service's limits (STYLE rule 9)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import Depends, File, UploadFile
from starlette.concurrency import run_in_threadpool

from services.common.deps import SettingsDep


async def decoded_audio(file: Annotated[UploadFile, File(description="The audio file")], settings: SettingsDep) -> np.ndarray:
    """16 kHz mono float32; AudioDecodeError -> 415, empty -> 400, above max_audio_s -> 413 (typed errors)."""
    from cascade.audio import load_audio

    data = await file.read()
    cap = min(settings.service.max_audio_s, settings.asr.max_duration_s)
    return await run_in_threadpool(load_audio, data, max_duration_s=cap)


DecodedAudio = Annotated[np.ndarray, Depends(decoded_audio)]
