"""N-best rescoring and generative error correction (GER) with guards; HyPoradise data I/O.

    rescore(nbest, backend, options) -> Correction
    correct(nbest, backend, ger, rescore) -> Correction
    correct_many(nbests, backend, method=..., ger=..., rescore=..., batch_size=...) -> Iterator[Correction]
    build_prompt(nbest, ger) -> str          (the prompt inference and training share)
"""

from __future__ import annotations

from cascade.ger.correct import (
    RESPONSE_END,
    build_prompt,
    build_training_example,
    correct,
    correct_many,
    render_prompt,
)
from cascade.ger.rescore import rescore, rescore_many

__all__ = [
    "RESPONSE_END",
    "build_prompt",
    "build_training_example",
    "correct",
    "correct_many",
    "render_prompt",
    "rescore",
    "rescore_many",
]
