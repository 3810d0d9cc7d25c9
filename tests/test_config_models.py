"""Settings precedence and the bundled-model registry, on the real installed packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade import models
from cascade.cli import app
from cascade.config import AsrOptions, load_settings, save_yaml
from cascade.types import InvalidInput, ModelNotFound

runner = CliRunner()


def test_env_overrides_yaml_and_flags_override_env(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("asr:\n  beam_size: 4\n  n_best: 2\n")
    monkeypatch.setenv("CASCADE_CONFIG", str(cfg))
    assert load_settings().asr.beam_size == 4
    monkeypatch.setenv("CASCADE_ASR__BEAM_SIZE", "3")
    s = load_settings()
    assert (s.asr.beam_size, s.asr.n_best) == (3, 2)
    s = load_settings({"asr": {"n_best": 1}})
    assert (s.asr.beam_size, s.asr.n_best) == (3, 1), "a flag changes one field, not the section"


def test_invalid_setting_names_the_field(monkeypatch):
    monkeypatch.setenv("CASCADE_ASR__N_BEST", "40")  # above the widest beam
    with pytest.raises(InvalidInput, match="asr"):
        load_settings()


def test_options_are_frozen_and_reject_unknown_keys():
    opts = AsrOptions()
    with pytest.raises(Exception):
        opts.beam_size = 3  # type: ignore[misc]
    with pytest.raises(Exception):
        AsrOptions(beam_sise=3)  # type: ignore[call-arg]
    assert opts.model_copy(update={"n_best": 2}).n_best == 2


def test_save_yaml_merges(tmp_path):
    path = tmp_path / "x.yaml"
    save_yaml({"rescore": {"lam": 0.25}}, path)
    save_yaml({"asr": {"n_best": 3}}, path)
    text = path.read_text()
    assert "lam: 0.25" in text and "n_best: 3" in text


def test_registry_resolves_bundled_whisper(settings):
    tiny = models.whisper_dir("tiny.en", settings.home)
    assert (tiny / "model.bin").stat().st_size == models.REGISTRY["tiny.en"].size
    base = models.whisper_dir("base", settings.home)  # assembled from two packages, sha256-checked
    assert (base / "model.bin").stat().st_size == models.REGISTRY["base"].size
    assert (base / "tokenizer.json").exists() and (base / ".verified").exists()


def test_assembly_detects_corruption(tmp_path, settings):
    spec = models.REGISTRY["base"].model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ModelNotFound, match="sha256"):
        models._assemble(spec, tmp_path)
    assert not any((tmp_path / "models" / "base").glob("model.bin*")), "no half-written weights left behind"


def test_unknown_broken_and_missing_models(settings, tmp_path):
    with pytest.raises(ModelNotFound, match="unknown whisper model 'nope'"):
        models.whisper_dir("nope", settings.home)
    with pytest.raises(ModelNotFound, match="not usable"):
        models.whisper_dir("small", settings.home)
    with pytest.raises(ModelNotFound, match="not a CTranslate2 Whisper directory"):
        models.whisper_dir(str(tmp_path), settings.home)
    missing = models.Part(package="cascade_no_such_pkg", pip_name="no-such-pkg==1", relpath="x.bin")
    with pytest.raises(ModelNotFound, match="install the package no-such-pkg==1"):
        models._part_path(missing)


def test_models_list_and_config_show_cli():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["tiny.en"]["status"] == "installed"
    assert rows["small"]["status"] == "broken"
    assert Path(rows["en_US-joe-medium"]["path"]).exists()
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["asr"]["model"] == "tiny.en"


def test_cli_bad_setting_is_one_line_error(monkeypatch):
    monkeypatch.setenv("CASCADE_ASR__BEAM_SIZE", "zero")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert "error: invalid setting asr.beam_size" in result.output
    assert "Traceback" not in result.output
