"""Thin routes of the LLM service (OpenAI completions/chat/models + cascade rescore/correct)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from openai.types import Completion
from openai.types.chat import ChatCompletion

from cascade.types import Correction, FusionRequest, NBest
from services.common.deps import QueuesDep
from services.common.errors import ERROR_RESPONSES
from services.common.sse import sse_response
from services.llm.protocol import ChatCompletionRequest, CompletionRequest, CorrectParams
from services.llm.serving import LlmServing

router = APIRouter(tags=["llm"])


def get_llm(request: Request) -> LlmServing:
    return request.app.state.llm


LlmDep = Annotated[LlmServing, Depends(get_llm)]


@router.get("/v1/models")
async def list_models(llm: LlmDep) -> dict:
    """The base model and every served LoRA adapter (pass its id as `model`)."""
    return {"object": "list", "data": [m.model_dump() for m in llm.models()]}


@router.get("/v1/models/{model_id:path}", responses=ERROR_RESPONSES)
async def retrieve_model(model_id: str, llm: LlmDep) -> dict:
    """One served model, adapter or alias (`parent`: the model an alias means); 404 for other names."""
    return llm.model(model_id).model_dump()


@router.post("/v1/completions", responses=ERROR_RESPONSES)
async def create_completion(req: CompletionRequest, llm: LlmDep, queues: QueuesDep) -> Completion:
    """Completions; echo + logprobs (+ max_tokens=0) returns prompt token log-probs the way vLLM does."""
    return await queues[f"llm:{llm.name}"].run(llm.complete, req)


@router.post("/v1/chat/completions", responses=ERROR_RESPONSES, response_model=ChatCompletion)
async def create_chat_completion(req: ChatCompletionRequest, llm: LlmDep, queues: QueuesDep) -> Response:
    """Chat; `stream=true` answers OpenAI's SSE chunks, content-part messages are accepted."""
    queue = queues[f"llm:{llm.name}"]
    if req.stream:
        return sse_response(await queue.open_stream(lambda: llm.chat_stream(req)), done=True)
    return await queue.run(llm.chat, req)


@router.post("/v1/rescore", responses=ERROR_RESPONSES)
async def rescore(nbest: NBest, llm: LlmDep, queues: QueuesDep) -> Correction:
    """Rescore an N-best list with (1-λ)·AM + λ·LM (cascade.ger.rescore)."""
    return await queues[f"llm:{llm.name}"].run(llm.rescore, nbest)


@router.post("/v1/correct", responses=ERROR_RESPONSES)
async def correct(nbest: NBest, llm: LlmDep, queues: QueuesDep,
                  params: Annotated[CorrectParams, Query()]) -> Correction:
    """Generative error correction (or rescoring) of one N-best list, guards included."""
    return await queues[f"llm:{llm.name}"].run(llm.correct, nbest, params.method, params.model)


@router.post("/v1/fuse", responses=ERROR_RESPONSES)
async def fuse(req: FusionRequest, llm: LlmDep, queues: QueuesDep) -> Correction:
    """Fuse several recognisers' transcripts of one utterance: rover (majority vote), rescore, rerank or ger."""
    return await queues[f"llm:{llm.name}"].run(llm.fuse, req)
