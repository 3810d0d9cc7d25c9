"""The Ray Data engine of batch correction (`cascade correct-batch --engine ray`).

The driver writes the pending chunks as JSONL shards (one line per chunk, so
Ray's own batching can never change an LLM batch), Ray Data reads them and runs
`process_chunk` in a pool of actors, each of which loads one LLM engine once
(`map_batches` with a callable class), and the driver takes the rendered
chunks back in input order into the same journal the local engine writes. So
the output is the local engine's, byte for byte, and resuming works the same.

Cluster: `ray.init()` joins the cluster named by `BatchOptions.ray_address` or
the `RAY_ADDRESS` environment variable, else starts a local one. On a
multi-node cluster the shards live beside the output file, which must then be
on storage every node can read.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cascade.batch.chunks import ChunkResult, lazy_corrector, process_chunk, worker_settings
from cascade.config import Settings
from cascade.formats.records import Item
from cascade.types import BackendUnavailable

logger = logging.getLogger(__name__)


class RayCorrector:
    """One per Ray actor: builds the corrector (loads the LLM) once, then renders whole chunks."""

    def __init__(self, settings: Settings):
        self.method = settings.correct.mode
        self.corrector = lazy_corrector(self.method, settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("seq", "data", "n", "changed", "fallbacks", "errors")}
        for seq, payload in zip(batch["seq"], batch["items"]):
            items = [Item.model_validate(obj) for obj in json.loads(payload)]
            res = process_chunk(items, self.method, self.corrector)
            out["seq"].append(int(seq))
            out["data"].append(res.data.decode("utf-8"))
            for key in ("n", "changed", "fallbacks", "errors"):
                out[key].append(getattr(res, key))
        return out


def _init_ray(settings: Settings) -> None:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable("--engine ray needs Ray Data: pip install 'cascade[ray]'") from exc
    if ray.is_initialized():
        return
    ray.init(address=settings.batch.ray_address, logging_level=logging.WARNING, log_to_driver=False,
             include_dashboard=False)


def _write_shards(stream: Iterator[list[Item]], where: Path, per_shard: int) -> list[str]:
    """Pending chunks as JSONL shards: one line {"seq", "items"} per chunk, `per_shard` lines a file."""
    paths: list[str] = []
    fh = None
    for seq, chunk in enumerate(stream):
        if seq % per_shard == 0:
            if fh:
                fh.close()
            paths.append(str(where / f"shard-{len(paths):05d}.jsonl"))
            fh = open(paths[-1], "w", encoding="utf-8")
        items = json.dumps([it.model_dump(mode="json") for it in chunk], ensure_ascii=False)
        fh.write(json.dumps({"seq": seq, "items": items}, ensure_ascii=False) + "\n")
    if fh:
        fh.close()
    return paths


def execute_ray(stream: Iterator[list[Item]], settings: Settings, out_dir: Path | None = None) -> Iterator[ChunkResult]:
    """Run the pending chunks on Ray Data; yield their results in input order."""
    _init_ray(settings)
    import ray

    opts = settings.batch
    where = Path(tempfile.mkdtemp(prefix=".cascade-ray-", dir=out_dir))
    try:
        paths = _write_shards(stream, where, opts.ray_shard_batches)
        if not paths:
            return
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray.data.read_json(paths, override_num_blocks=len(paths)).map_batches(
            RayCorrector, fn_constructor_kwargs={"settings": worker_settings(settings, opts.workers)},
            batch_size=1, concurrency=opts.workers, num_cpus=1, batch_format="numpy")
        yield from _in_order(ds.iter_rows())
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _in_order(rows: Iterator[dict[str, Any]]) -> Iterator[ChunkResult]:
    """Reorder by chunk number (Ray keeps order with preserve_order; this guards against a reordering)."""
    waiting: dict[int, ChunkResult] = {}
    want = 0
    for row in rows:
        waiting[int(row["seq"])] = ChunkResult(str(row["data"]).encode("utf-8"), int(row["n"]), int(row["changed"]),
                                               int(row["fallbacks"]), int(row["errors"]))
        while want in waiting:
            yield waiting.pop(want)
            want += 1
    if waiting:
        raise RuntimeError(f"Ray returned chunks {sorted(waiting)[:5]} but not chunk {want}")
