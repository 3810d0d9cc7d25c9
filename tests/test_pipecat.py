"""pipecat (pipecat-ai[openai] 1.14) against the gateway with only base_url set (issue 26).

pipecat's pins clash with the main venv's (protobuf, soundfile), so `make test` builds its own venv first
(`make pipecat-env`: tests/extra_env.sh, ~/.cache/cascade/venv-pipecat) and this test runs tests/pipecat_check.py there as a
subprocess against a real gateway on loopback: OpenAISTTService, OpenAILLMService (its default model, a
function it calls and the answer after the result, through pipecat's own aggregator) and OpenAITTSService,
each in a real pipecat pipeline. A missing environment is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from cascade.audio import load_audio
from services.common.testing import JFK_WORDS, Service, plain_words, running_service

ROOT = Path(__file__).resolve().parent.parent
PIPECAT_PY = Path(os.environ.get("CASCADE_PIPECAT_VENV", "~/.cache/cascade/venv-pipecat")).expanduser() / "bin" / "python"
ENV = {"OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1",
       "CASCADE_SERVICE__QUEUE_TIMEOUT_S": "120"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-pipecat"), env=ENV, ready_timeout=300) as gw:
        yield gw


def test_pipecat_services_work_with_only_base_url(gateway: Service, jfk_path: Path, tmp_path: Path) -> None:
    assert PIPECAT_PY.exists(), f"the pipecat environment is missing ({PIPECAT_PY}): run `make pipecat-env`"
    wav = tmp_path / "jfk16.wav"
    sf.write(wav, load_audio(jfk_path), 16000, subtype="PCM_16")
    proc = subprocess.run([str(PIPECAT_PY), str(ROOT / "tests" / "pipecat_check.py"), gateway.url + "/v1", str(wav)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    stt = out["stt"]  # pipecat's default STT model name, one segment between its VAD frames
    assert stt["model"] == "gpt-transcribe" and not stt["errors"], stt
    assert JFK_WORDS in plain_words(stt["text"]), stt

    llm = out["llm"]  # gpt-4.1 means the served SmolLM2; the call pipecat ran and the answer after its result
    assert llm["model"] == "gpt-4.1" and not llm["errors"], llm
    assert len(llm["calls"]) == 1 and "paris" in llm["calls"][0]["city"].lower(), llm
    roles = [m["role"] for m in llm["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"], roles
    call = llm["messages"][1]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and llm["messages"][2]["tool_call_id"] == call["id"]
    assert llm["messages"][3]["content"].strip() and llm["inference"].strip()

    tts = out["tts"]  # pipecat's defaults: gpt-4o-mini-tts, alloy, raw pcm read as 24 kHz
    assert tts["model"] == "gpt-4o-mini-tts" and tts["voice"] == "alloy" and not tts["errors"], tts
    assert tts["sample_rates"] == [24000] and 1.5 < tts["seconds"] < 10 and tts["rms"] > 300, tts
