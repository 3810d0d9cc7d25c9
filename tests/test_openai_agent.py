"""The gateway as a voice agent's backend (issue 26): the stock openai client with only base_url changed.

One real gateway on loopback (Whisper tiny.en, SmolLM2 on ct2, piper in-process) and a relay gateway that
reaches it over HTTP: framework default model names, tools (a round trip, every tool_choice, streamed
tool-call deltas), JSON mode, log-probs, /v1/models/{id}, /v1/completions and the small errors. The LLM is
135M parameters: tests check what constrained decoding guarantees (a call names a given function, its
arguments validate, JSON parses) and the decisions greedy decoding makes on plain requests.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from services.common.testing import JFK_WORDS, Service, plain_words, relay_to, running_service

ENV = {"OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1",
       "CASCADE_SERVICE__QUEUE_TIMEOUT_S": "120"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIMER = {"type": "function", "function": {
    "name": "set_timer", "description": "Set a countdown timer",
    "parameters": {"type": "object", "properties": {"minutes": {"type": "integer", "minimum": 1}},
                   "required": ["minutes"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIMER]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PARIS = [{"role": "user", "content": "What's the weather like in Paris?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-agent"), env=ENV, ready_timeout=300) as gw:
        yield gw


@pytest.fixture(scope="module")
def relay(tmp_path_factory, gateway) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-agent-relay"), env=ENV, args=relay_to(gateway.url)) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def _valid_calls(message) -> list[tuple[str, dict]]:
    """Each call's name and parsed arguments, checked against its function's schema."""
    out = []
    for call in message.tool_calls or ():
        assert call.type == "function" and call.id.startswith("call_")
        args = json.loads(call.function.arguments)
        jsonschema.validate(args, SCHEMAS[call.function.name])
        out.append((call.function.name, args))
    return out


# --------------------------------------------------------------------------- model names as clients send them


def test_framework_default_names_reach_the_served_models(client, jfk_path):
    for name in ("gpt-4.1", "gpt-4o-mini", "default", "some-model-nobody-serves"):
        out = client.chat.completions.create(model=name, messages=PARIS, max_tokens=4)
        assert out.model == "smollm2" and out.choices[0].message.content, name  # the real model is reported
    for name in ("gpt-transcribe", "gpt-4o-transcribe", "whisper-1"):
        with jfk_path.open("rb") as fh:
            assert JFK_WORDS in plain_words(client.audio.transcriptions.create(file=fh, model=name).text), name
    with jfk_path.open("rb") as fh:  # the configured tiny.en cannot translate: whisper-1 means the multilingual base
        assert "ask not" in plain_words(client.audio.translations.create(file=fh, model="whisper-1").text)


def test_models_retrieve_and_completions(client):
    assert client.models.retrieve("smollm2").id == "smollm2"
    alias = client.models.retrieve("gpt-4.1")
    assert alias.model_extra["kind"] == "llm" and alias.model_extra["parent"] == "smollm2"
    assert client.models.retrieve("whisper-1").model_extra["kind"] == "asr"
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")
    out = client.completions.create(model="gpt-4.1", prompt="The capital of France is", max_tokens=3)
    assert out.model == "smollm2" and out.choices[0].text.strip() and out.usage.completion_tokens <= 3


def test_strict_models_restore_404(settings):
    from cascade.types import ModelNotFound
    from services.llm.serving import LlmServing

    strict = settings.model_copy(update={"service": settings.service.model_copy(update={"strict_models": True})})
    assert LlmServing(strict).resolve("gpt-4.1") is None  # the alias table still holds
    with pytest.raises(ModelNotFound, match="not served here"):
        LlmServing(strict).resolve("some-model-nobody-serves")
    assert LlmServing(settings).resolve("some-model-nobody-serves") is None


def test_long_prompts_fit_the_context_and_images_are_refused(gateway):
    url = gateway.url + "/v1/chat/completions"
    long = " ".join(f"word{i % 97}" for i in range(1040))  # ~3,000 tokens: above the old 2,048 cap
    r = httpx.post(url, json={"model": "smollm2", "messages": [{"role": "user", "content": long}], "max_tokens": 1},
                   timeout=300)
    assert r.status_code == 200, r.text
    r = httpx.post(url, json={"model": "smollm2", "messages": [{"role": "user", "content": long * 3}]}, timeout=120)
    assert r.status_code == 400 and "prompt limit" in r.json()["error"]["message"]
    image = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    r = httpx.post(url, json={"model": "smollm2", "messages": [{"role": "user", "content": image}]}, timeout=60)
    assert r.status_code == 400 and "'image_url' content parts are not supported" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "messages.0.content"


# --------------------------------------------------------------------------- tools


def test_tool_round_trip(client):
    first = client.chat.completions.create(model="gpt-4.1", messages=PARIS, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (name, args), = _valid_calls(choice.message)
    assert name == "get_weather" and args["city"] == "Paris"
    call = choice.message.tool_calls[0]
    history = [*PARIS, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 22, "sky": "sunny"})}]
    second = client.chat.completions.create(model="gpt-4.1", messages=history, tools=TOOLS, max_tokens=40)
    assert second.choices[0].message.tool_calls is None and second.choices[0].message.content.strip()
    assert "<tool" not in second.choices[0].message.content


def test_tool_choice_auto_none_required_named(client):
    timer = client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS,
                                           messages=[{"role": "user", "content": "Set a timer for 10 minutes."}])
    assert _valid_calls(timer.choices[0].message) == [("set_timer", {"minutes": 10})]
    chat = [{"role": "user", "content": "Tell me a joke."}]
    joke = client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=chat, max_tokens=30)
    assert joke.choices[0].message.tool_calls is None and joke.choices[0].message.content  # the model decided
    forced = client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=chat, tool_choice="required")
    assert forced.choices[0].finish_reason == "tool_calls" and len(_valid_calls(forced.choices[0].message)) >= 1
    named = client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=PARIS,
                                           tool_choice={"type": "function", "function": {"name": "set_timer"}})
    assert [n for n, _ in _valid_calls(named.choices[0].message)] == ["set_timer"]
    none = client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=PARIS, tool_choice="none",
                                          max_tokens=8)
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content
    with pytest.raises(BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=PARIS,
                                       tool_choice={"type": "function", "function": {"name": "no_such_tool"}})


@pytest.mark.parametrize("where", ["gateway", "relay"])
def test_streamed_tool_calls_are_openai_deltas(request, where):
    service = request.getfixturevalue(where)
    client = OpenAI(base_url=service.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    chunks = list(client.chat.completions.create(model="gpt-4.1", messages=PARIS, tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].type == "function"
    assert all(d.index == 0 and d.id is None and d.function.name is None for d in deltas[1:])
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments)["city"] == "Paris"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].model == "smollm2"


# --------------------------------------------------------------------------- JSON mode and log-probs


def test_json_object_and_strict_schema(client):
    ask = [{"role": "user", "content": "Give the capital of France."}]
    loose = client.chat.completions.create(model="gpt-4.1", messages=ask, response_format={"type": "json_object"},
                                           max_tokens=60)
    assert isinstance(json.loads(loose.choices[0].message.content), dict)
    schema = {"type": "object", "properties": {"capital": {"type": "string"}, "population_millions": {"type": "number"}},
              "required": ["capital", "population_millions"], "additionalProperties": False}
    strict = client.chat.completions.create(model="gpt-4.1", messages=ask, max_tokens=60, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": schema}})
    jsonschema.validate(json.loads(strict.choices[0].message.content), schema)
    streamed = client.chat.completions.create(model="gpt-4.1", messages=ask, max_tokens=60, stream=True,
                                              response_format={"type": "json_object"})
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == loose.choices[0].message.content


def test_logprobs_are_the_models_scores(client):
    out = client.chat.completions.create(model="gpt-4.1", messages=PARIS, max_tokens=6, logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    assert "".join(t.token for t in content) == out.choices[0].message.content and len(content) == 6
    for t in content:  # greedy: the chosen token is the most likely one
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob) and t.logprob <= 0
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
    plain = client.chat.completions.create(model="gpt-4.1", messages=PARIS, max_tokens=6)
    assert plain.choices[0].message.content == out.choices[0].message.content and plain.choices[0].logprobs is None


def test_transcription_logprobs_are_whispers_own(client, relay, jfk_path):
    """include=["logprobs"] (gpt-4o-transcribe's field): every token of the text with its log-prob under
    Whisper's decoder; refused where OpenAI refuses it, and by a gateway whose recogniser is remote."""
    from openai import APIStatusError

    with jfk_path.open("rb") as fh:
        out = client.audio.transcriptions.create(file=fh, model="gpt-4o-transcribe", include=["logprobs"])
    tokens = out.logprobs
    assert "".join(t.token for t in tokens).strip() == out.text and JFK_WORDS in plain_words(out.text)
    assert all(t.logprob <= 0 and bytes(int(b) for b in t.bytes) == t.token.encode() for t in tokens)
    words = [t.logprob for t in tokens if t.token.strip(" ,.")]  # Whisper is sure of these words, less of a comma
    assert sum(words) / len(words) > -0.5 and min(words) > -3
    with jfk_path.open("rb") as fh:
        assert client.audio.transcriptions.create(file=fh, model="whisper-1").logprobs is None
    with jfk_path.open("rb") as fh, pytest.raises(BadRequestError, match="logprobs"):
        client.audio.transcriptions.create(file=fh, model="whisper-1", include=["logprobs"], response_format="verbose_json")
    remote = OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    with jfk_path.open("rb") as fh, pytest.raises(APIStatusError, match="in-process") as err:
        remote.audio.transcriptions.create(file=fh, model="whisper-1", include=["logprobs"])
    assert err.value.status_code == 501


# --------------------------------------------------------------------------- both CPU backends


@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_constrained_decoding_on_both_backends(settings, backend):
    """The same grammar machinery drives transformers (a logits loop) and CTranslate2 (its own decoding,
    restarted where the grammar refuses its token): both give schema-valid calls and JSON."""
    from cascade.llm import chat as llm_chat
    from cascade.llm import load_backend

    llm = load_backend(settings.llm.model_copy(update={"backend": backend, "threads": 1}), settings.home)
    functions = [t["function"] for t in TOOLS]
    calls, decoded = llm_chat.choose_tools(llm, [{"role": "user", "content": "Set a timer for 10 minutes."}],
                                           functions, "required", max_tokens=48)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("set_timer", {"minutes": 10})], decoded.text
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 20}},
              "required": ["answer"], "additionalProperties": False}
    prompt = llm.chat_template([{"role": "user", "content": "What is the capital of Italy?"}])
    out = llm_chat.json_reply(llm, prompt, schema, max_tokens=32)
    jsonschema.validate(json.loads(out.text), schema)


def test_history_with_tool_results_reads_as_text():
    from cascade.llm.chat import as_prompt_messages, parse_calls

    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    history = [{"role": "developer", "content": "Be brief."}, *PARIS,
               {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    shown = as_prompt_messages(history)
    assert [m["role"] for m in shown] == ["system", "user", "assistant", "user"]
    assert shown[2]["content"] == '<tool_call>[{"name": "get_weather", "arguments": {"city": "Rome"}}]</tool_call>'
    plain = as_prompt_messages(history, calls_as_text=False)
    assert [m["role"] for m in plain] == ["system", "user"] and "(get_weather returned: sunny)" in plain[1]["content"]
    assert [c.name for c in parse_calls(shown[2]["content"])] == ["get_weather"]
    assert parse_calls("<tool_call>[]</tool_call>") == [] and parse_calls('<tool_call>[{"name": "x", "argu') == []
    from cascade.llm.constrain import call_schema

    open_schema = {"name": "f", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    assert call_schema([open_schema])["properties"]["arguments"]["additionalProperties"] is False


# --------------------------------------------------------------------------- LiveKit Agents' OpenAI plugin, defaults


def test_livekit_plugin_defaults_with_base_url_only(gateway, jfk_path):
    """openai.LLM() (gpt-4.1), openai.STT() (gpt-4o-mini-transcribe) and openai.TTS() (gpt-4o-mini-tts) with only
    base_url: a function_tool round trip as the agent runs it, a transcription and speech."""
    pytest.importorskip("livekit.plugins.openai")
    import asyncio

    import numpy as np
    import soundfile as sf
    from livekit import rtc
    from livekit.agents import function_tool
    from livekit.agents import llm as lk_llm
    from livekit.plugins import openai as lk_openai

    base = gateway.url + "/v1"

    @function_tool
    async def get_weather(city: str) -> str:
        """Get the current weather in a city.

        Args:
            city: the city name
        """
        return json.dumps({"temperature_c": 22, "sky": "sunny"})

    async def turn(model, ctx) -> tuple[str, list]:
        text, calls = "", []
        async with model.chat(chat_ctx=ctx, tools=[get_weather]) as stream:
            async for chunk in stream:
                if chunk.delta:
                    text += chunk.delta.content or ""
                    calls += chunk.delta.tool_calls or []
        return text, calls

    async def run() -> None:
        model = lk_openai.LLM(base_url=base, api_key="unused")
        assert model.model == "gpt-4.1"
        ctx = lk_llm.ChatContext()
        ctx.add_message(role="user", content="What's the weather like in Paris?")
        _, calls = await turn(model, ctx)
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
        for c in calls:
            ctx.insert([lk_llm.FunctionCall(call_id=c.call_id, name=c.name, arguments=c.arguments),
                        lk_llm.FunctionCallOutput(call_id=c.call_id, name=c.name, output=await get_weather("Paris"),
                                                  is_error=False)])
        text, again = await turn(model, ctx)
        assert text.strip() and not again
        await model.aclose()
        samples, rate = sf.read(jfk_path, dtype="int16", always_2d=True)
        mono = np.ascontiguousarray(samples[:, 0])
        frame = rtc.AudioFrame(data=mono.tobytes(), sample_rate=rate, num_channels=1, samples_per_channel=len(mono))
        heard = await lk_openai.STT(base_url=base, api_key="unused").recognize(frame)
        assert JFK_WORDS in plain_words(heard.alternatives[0].text)
        tts = lk_openai.TTS(base_url=base, api_key="unused")
        pcm = b"".join([bytes(a.frame.data) async for a in tts.synthesize("Hello there.")])
        assert tts.sample_rate == 24000 and len(pcm) > 24000  # > 0.5 s of 16-bit audio

    asyncio.run(run())
