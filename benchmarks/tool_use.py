"""Tool use of the served chat model on tests/data/tool_use.json: one JSON line of figures.

Each request goes through the LLM service's own chat code (services.llm.serving.LlmServing, the wire types
of /v1/chat/completions) with all six tools and tool_choice auto, greedy. Figures:
- valid_calls_pct: calls whose arguments parse and validate against their function's schema (constrained
  decoding makes this 100 % by construction; the figure checks it);
- right_function_pct: of the 42 requests that need a call, those whose (first) call names the expected function;
- right_arguments_pct: of those 42, the right function with every expected argument equal after lower-casing and
  dropping punctuation (arguments the set does not expect are not judged);
- no_tool_right_pct: of the 10 requests that need no call, those answered without one;
- decision_pct: call / no call right over all 52.

    python benchmarks/tool_use.py [--backend ct2|transformers] [--limit N] [--choice auto|required]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data" / "tool_use.json"


def _norm(value: object) -> str:
    return " ".join("".join(c for c in str(value).lower() if c.isalnum() or c.isspace()).split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["ct2", "transformers"], default="ct2")
    ap.add_argument("--limit", type=int, default=0, help="first N requests only (0: all)")
    ap.add_argument("--choice", choices=["auto", "required"], default="auto")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    import jsonschema

    from cascade.config import load_settings
    from services.llm.protocol import ChatCompletionRequest
    from services.llm.serving import LlmServing

    data = json.loads(DATA.read_text())
    tools = [{"type": "function", "function": f} for f in data["tools"]]
    schemas = {f["name"]: f["parameters"] for f in data["tools"]}
    requests = data["requests"][: args.limit or None]
    settings = load_settings()
    settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={
        "backend": args.backend, "threads": args.threads})})
    llm = LlmServing(settings)
    llm.backend  # loaded before the clock starts

    calls = valid = right_fn = right_args = no_tool_right = decisions = 0
    need = sum(r["expect"] is not None for r in requests)
    misses: list[dict] = []
    start = time.perf_counter()
    for r in requests:
        req = ChatCompletionRequest.model_validate({"model": "gpt-4.1", "tools": tools, "tool_choice": args.choice,
                                                    "messages": [{"role": "user", "content": r["query"]}],
                                                    "max_tokens": 96})
        message = llm.chat(req).choices[0].message
        got = []
        for call in message.tool_calls or ():
            calls += 1
            try:
                parsed = json.loads(call.function.arguments)
                jsonschema.validate(parsed, schemas[call.function.name])
                valid += 1
            except (ValueError, KeyError, jsonschema.ValidationError):
                parsed = None
            got.append((call.function.name, parsed))
        expect = r["expect"]
        decisions += (expect is None) == (not got)
        if expect is None:
            no_tool_right += not got
        elif got and got[0][0] == expect["name"]:
            right_fn += 1
            ok = isinstance(got[0][1], dict) and all(_norm(got[0][1].get(k)) == _norm(v)
                                                     for k, v in expect["arguments"].items())
            right_args += ok
            if not ok:
                misses.append({"query": r["query"], "got": got[0][1]})
        else:
            misses.append({"query": r["query"], "got": got[:1]})
    seconds = time.perf_counter() - start
    pct = lambda a, b: round(100.0 * a / b, 1) if b else None  # noqa: E731
    print(json.dumps({
        "requests": len(requests), "backend": args.backend, "model": settings.llm.model, "tool_choice": args.choice,
        "calls": calls, "valid_calls_pct": pct(valid, calls), "right_function_pct": pct(right_fn, need),
        "right_arguments_pct": pct(right_args, need), "no_tool_right_pct": pct(no_tool_right, len(requests) - need),
        "decision_pct": pct(decisions, len(requests)), "s_per_request": round(seconds / max(1, len(requests)), 2),
        "load": round(os.getloadavg()[0], 2), "misses": misses[:8]}))


if __name__ == "__main__":
    main()
