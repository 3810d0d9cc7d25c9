"""Which implementation runs each stage: in-process or remote, chosen by ServiceSettings URLs."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.config import Settings


def llm_stage(settings: Settings, app: FastAPI):
    """The LLM stage for correction: the LLM service at llm_url, else cascade's backend in-process
    (loaded on first use, so a service that never corrects never loads an LLM)."""
    svc = settings.service
    if svc.llm_url:
        from cascade.clients import LlmClient

        return LlmClient.from_settings(svc.llm_url, svc)
    from services.llm.serving import LlmServing

    return LlmServing(settings)


def build_recognizer(settings: Settings):
    svc = settings.service
    if svc.asr_url:
        from cascade.clients import AsrClient

        return AsrClient.from_settings(svc.asr_url, svc)
    from services.asr.serving import LocalRecognizer

    return LocalRecognizer(settings)
