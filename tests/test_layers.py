"""The architecture holds: imports run one way (import-linter contracts in pyproject.toml), and the
wheel is complete (prompts and configs ship inside it, so correction works outside the checkout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_imports_run_one_way() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_every_command_module_registers_whatever_is_imported_first() -> None:
    """Importing a command module before cascade.cli used to drop its commands silently."""
    code = ("import cascade.commands.ger, cascade.commands.batch\nfrom cascade.cli import app\n"
            "import typer.main\nprint(sorted(typer.main.get_command(app).commands))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    for name in ("transcribe", "correct", "correct-batch", "eval", "train-ger", "speak", "serve"):
        assert f"'{name}'" in out, out


def test_the_wheel_corrects_outside_the_checkout(tmp_path: Path, settings) -> None:
    """Build the wheel, install it into an empty directory and run a GER correction from elsewhere."""
    dist, site, work, src = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere", tmp_path / "src"
    work.mkdir()
    # a clean copy of the source: setuptools' build/ of the checkout could carry stale modules into the wheel
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "benchmarks", "tests"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(dist.glob("cascade-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300,
                   capture_output=True)
    code = (
        "import json, cascade\n"
        "from cascade.config import load_settings\n"
        "from cascade.correct import build_corrector\n"
        "from cascade.types import NBest\n"
        "from cascade.config import DEFAULT_CONFIG\n"
        "s = load_settings()\n"
        "nb = NBest.from_texts(['show me flights from boston to denver', 'show me the flights from boston to denver'])\n"
        "c = next(build_corrector(s, 'ger').correct([nb]))\n"
        "print(json.dumps({'file': cascade.__file__, 'status': c.status, 'prompt': c.info.prompt_name if c.info else None,"
        " 'config': str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "CASCADE_HOME": str(settings.home), "OMP_NUM_THREADS": "1"}
    env.pop("CASCADE_CONFIG", None)
    res = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(site)), out  # the installed copy ran, not the checkout
    assert out["status"] in ("ok", "fallback") and out["prompt"] == "ger/hyporadise", out
    assert out["config"] and out["config"].startswith(str(site)), out  # configs/default.yaml ships in the wheel
