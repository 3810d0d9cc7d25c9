"""Batch correction of existing ASR output: chunks, a crash-safe journal, local and Ray engines.

    correct_file(input, out, settings) -> BatchSummary    (cascade.batch.engine)
    correct_joined(paths, out, settings)                   (cascade.batch.join: several systems fused)
    process_chunk(items, mode, corrector)                   (cascade.batch.chunks: what every worker runs)
"""

from cascade.batch.engine import BatchSummary, correct_file, run_batch

__all__ = ["BatchSummary", "correct_file", "run_batch"]
