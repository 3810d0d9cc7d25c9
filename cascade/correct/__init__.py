"""The correction seam: every CLI command, the pipeline, the services and the batch workers correct here.

    build_corrector(settings, mode=None, backend=None) -> Corrector   (loads the LLM only when the mode needs it)
    Corrector.correct(nbests) -> Iterator[Correction]                  (input order, one per list)
    transcript_corrector(settings, mode=None, translate=False)         (a Transcript's segments, for the CLI/pipeline)
    second_reader(settings, mode)                                      (the reranker's second recogniser, where the audio is)
    register("mode", needs_llm=...)                                   (add a mode; see correctors.py)

Modes are `cascade.types.CorrectionMode`; options are `cascade.config.CorrectOptions` (mode, the one
GER adapter, batch size).
"""

from cascade.correct import correctors  # noqa: F401 - registers the built-in modes
from cascade.correct.registry import (MODES, Corrector, available, build_corrector, load_llm, needs_llm, reads_alternatives,
                                      register)
from cascade.correct.transcripts import TranscriptCorrector, second_reader, transcript_corrector

__all__ = ["MODES", "Corrector", "TranscriptCorrector", "available", "build_corrector", "load_llm", "needs_llm",
           "reads_alternatives", "register", "second_reader", "transcript_corrector"]
