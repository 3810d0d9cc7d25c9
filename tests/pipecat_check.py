"""pipecat's OpenAI services against the gateway, run in pipecat's own venv (`make pipecat-env`) by
tests/test_pipecat.py: `python tests/pipecat_check.py BASE_URL AUDIO` prints one JSON line of what came back.

Each service runs in a real pipecat pipeline with its defaults and only base_url set (the API key is the
gateway's or unused): OpenAISTTService on a recording between VAD start/stop frames, OpenAILLMService with
a registered function (the tool round trip goes through pipecat's assistant aggregator: call, result,
second completion), OpenAITTSService on TTSSpeakFrame. Nothing of the project is imported here.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np
import soundfile as sf
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMContextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

TIMEOUT_S = 420.0


class Collect(FrameProcessor):
    """The pipeline's last processor: keeps every downstream frame; `done(frames)` says when to end."""

    def __init__(self, done):
        super().__init__()
        self.frames: list[Frame] = []
        self.done, self.finished = done, asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
            if isinstance(frame, ErrorFrame) or self.done(self.frames):
                self.finished.set()
        await self.push_frame(frame, direction)


async def run(processors: list[FrameProcessor], frames: list[Frame], done) -> list[Frame]:
    """The processors in a real pipeline: queue `frames`, wait until `done`, then end it with an EndFrame."""
    sink = Collect(done)
    worker = PipelineWorker(Pipeline([*processors, sink]), cancel_on_idle_timeout=False,
                            params=PipelineParams(audio_in_sample_rate=16000))
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker, frame):
        started.set()

    async def drive():
        await asyncio.wait_for(started.wait(), 30)
        for frame in frames:
            await worker.queue_frame(frame)
        try:
            await asyncio.wait_for(sink.finished.wait(), TIMEOUT_S)
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), drive())
    return sink.frames


def errors(frames: list[Frame]) -> list[str]:
    return [str(f.error) for f in frames if isinstance(f, ErrorFrame)]


async def stt(base_url: str, audio: str) -> dict:
    samples, rate = sf.read(audio, dtype="int16", always_2d=True)
    assert rate == 16000, rate
    pcm = samples[:, 0].tobytes()
    chunks = [InputAudioRawFrame(audio=pcm[i : i + 640], sample_rate=16000, num_channels=1)
              for i in range(0, len(pcm), 640)]
    service = OpenAISTTService(api_key="unused", base_url=base_url)
    frames = await run([service], [VADUserStartedSpeakingFrame(), *chunks, VADUserStoppedSpeakingFrame()],
                       lambda fs: any(isinstance(f, TranscriptionFrame) for f in fs))
    return {"model": service._settings.model, "errors": errors(frames),
            "text": " ".join(f.text for f in frames if isinstance(f, TranscriptionFrame))}


async def llm(base_url: str) -> dict:
    # the default model; the answer after the tool result capped (SmolLM2 rambles on for hundreds of tokens)
    service = OpenAILLMService(api_key="unused", base_url=base_url,
                               settings=OpenAILLMService.Settings(max_completion_tokens=40))
    calls: list[dict] = []

    async def get_weather(params):
        calls.append(dict(params.arguments))
        await params.result_callback({"city": params.arguments.get("city"), "temperature_c": 22, "sky": "sunny"})

    service.register_function("get_weather", get_weather)
    weather = FunctionSchema(name="get_weather", description="Get the current weather in a city",
                             properties={"city": {"type": "string", "description": "The city"}}, required=["city"])
    context = LLMContext(messages=[{"role": "user", "content": "What's the weather like in Paris?"}],
                         tools=ToolsSchema(standard_tools=[weather]))
    pair = LLMContextAggregatorPair(context)

    def answered(frames: list[Frame]) -> bool:  # the second completion (after the tool result) was written
        messages = context.get_messages()
        return any(m.get("role") == "tool" for m in messages) and messages[-1].get("role") == "assistant" \
            and bool(messages[-1].get("content"))

    frames = await run([service, pair.assistant()], [LLMContextFrame(context)], answered)
    plain = OpenAILLMService(api_key="unused", base_url=base_url)
    text = await plain.run_inference(LLMContext(messages=[{"role": "user", "content": "Name one colour of the sky."}]),
                                     max_tokens=12)
    return {"model": service._settings.model, "errors": errors(frames), "calls": calls,
            "messages": [{k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "tool_call_id")}
                         for m in context.get_messages()],
            "inference": text}


async def tts(base_url: str) -> dict:
    service = OpenAITTSService(api_key="unused", base_url=base_url)
    started = time.perf_counter()
    frames = await run([service], [TTSSpeakFrame("Hello there. The weather in Paris is sunny.")],
                       lambda fs: sum(len(f.audio) for f in fs if isinstance(f, TTSAudioRawFrame)) > 24000 * 2 * 1.5)
    audio = b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))
    pcm = np.frombuffer(audio, dtype="<i2")
    return {"model": service._settings.model, "voice": service._settings.voice, "errors": errors(frames),
            "sample_rates": sorted({f.sample_rate for f in frames if isinstance(f, TTSAudioRawFrame)}),
            "seconds": len(pcm) / 24000, "rms": float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0,
            "wall_s": round(time.perf_counter() - started, 2)}


async def main(base_url: str, audio: str) -> None:
    out = {"stt": await stt(base_url, audio), "llm": await llm(base_url), "tts": await tts(base_url)}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
