"""CPU LLM speed: transformers (fp32) vs CTranslate2 (float32, the default, and int8) in the same run, and
whether they decide alike.

Per backend: greedy tokens/s on chat prompts, GER seconds per 5-best list (the whole `ger`
corrector with the shipped adapter: rescoring, reranking, generation, guards, posterior gate; where its
seconds go: generate / score / count_tokens calls; prompt and answer tokens per list), rescoring
seconds per hypothesis (one score call per list), and the spoken turn's first-sentence latency
(cascade.respond.reply). Every measurement alternates the two backends item by item (which goes
first alternates too), so both see the same machine load; the ratios (ct2 / transformers wall
time, same run) are the figure to quote on a shared machine. Agreement: GER outputs and gate decisions (status + fallback reason)
identical on the same lists, the reranker's picks, λ = 0.2 rescoring picks from each backend's scores, the
largest score difference, and the WER of each (HyPoradise dev lists the shipped adapter never trained on:
the first 60 of each set).

Prints ONE JSON line. Run:
    ~/.cache/cascade/venv/bin/python benchmarks/llm_speed.py [--lists 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "hyporadise" / "dev"
SHIPPED = ROOT / "cascade" / "adapters" / "ger-smollm2"
CHAT = ["Tell me about the history of trains.", "How do I make a cup of tea?", "What should I pack for a weekend hike?"]
TURNS = ["What is the capital of France?", "Can you recommend a good book?", "What's the weather usually like in spring?"]


def dev_lists(n: int):
    """n utterances, taken in turn from each dev set's first 60 (held out from the shipped adapter)."""
    from cascade.formats.hyporadise import load_hyporadise

    sets = [load_hyporadise(p, limit=60) for p in sorted(DEV.glob("*.json"))]
    picked = [s[i] for i in range(60) for s in sets if i < len(s)]
    return picked[:n]


def interleaved(calls: dict, items) -> dict[str, tuple[float, list]]:
    """Run every backend's call on each item, alternating which goes first, so both see the same load.

    Returns per backend (total seconds, results in item order).
    """
    names = list(calls)
    out = {n: [0.0, []] for n in names}
    for i, item in enumerate(items):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            result = calls[name](item)
            out[name][0] += time.perf_counter() - start
            out[name][1].append(result)
    return {n: (t, r) for n, (t, r) in out.items()}


BACKENDS = {"transformers": {"backend": "transformers"},
            "ct2": {"backend": "ct2", "compute_type": "int8", "reply_compute_type": None},
            "ct2_float32": {"backend": "ct2", "compute_type": "float32", "reply_compute_type": None}}
"""The shipped config is ct2_float32; with llm.reply_compute_type int8 its replies are ct2's."""


class Timed:
    """The backend, timing its calls during GER (where the seconds go: generation, scoring, tokenising)."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def _timed(self, what: str, call, *args, **kw):
        start = time.perf_counter()
        try:
            return call(*args, **kw)
        finally:
            self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - start
            self.calls[what] = self.calls.get(what, 0) + 1

    def generate(self, *args, **kw):
        return self._timed("generate", self.inner.generate, *args, **kw)

    def score(self, *args, **kw):
        return self._timed("score", self.inner.score, *args, **kw)

    def count_tokens(self, *args, **kw):
        return self._timed("count_tokens", self.inner.count_tokens, *args, **kw)


def load(settings, name: str):
    """(backend, ger corrector, seconds to load both incl. the adapter's conversion on first use, the corrector's Timed backend)."""
    from cascade.correct import build_corrector
    from cascade.llm import load_backend

    start = time.perf_counter()
    llm = settings.llm.model_copy(update=BACKENDS[name])
    backend = load_backend(llm, settings.home)
    backend.score(["warm up"], adapter=str(SHIPPED))
    timed = Timed(backend)
    corrector = build_corrector(settings.model_copy(update={"llm": llm}), "ger", backend=timed)
    return backend, corrector, time.perf_counter() - start, timed


def cased_picks(utts, scores) -> list[int]:
    """The hypothesis λ = 0.2 rescoring (the `cased` profile: λ and length norm) picks from these LLM scores."""
    from cascade.config import RescoreOptions
    from cascade.ger.rescore import candidate_scores, pick

    opts = RescoreOptions(lam=0.2, length_norm="none", profile="none")
    return [pick(candidate_scores(u.nbest, dict(zip(u.nbest.texts, s)), opts)) for u, s in zip(utts, scores)]


def measure(backends: dict, utts, max_tokens: int, rerank) -> tuple[dict, dict]:
    """Figures per backend and its decisions (GER corrections, reranker and λ-rescoring picks), every
    measurement interleaved across backends."""
    from cascade.config import ChatOptions
    from cascade.ger.correct import correct_many
    from cascade.respond import reply

    chat = {n: [b.chat_template([{"role": "user", "content": c}]) for c in CHAT] for n, (b, *_) in backends.items()}
    for n, (b, *_) in backends.items():  # warm up
        b.generate(chat[n][:1], max_tokens=4)
        reply("Hello.", [], b, ChatOptions())
    gen = interleaved({n: (lambda i, b=b, n=n: b.count_tokens(b.generate([chat[n][i]], max_tokens=max_tokens)[0]))
                       for n, (b, *_) in backends.items()}, range(len(CHAT)))
    score = interleaved({n: (lambda u, b=b: b.score(list(u.nbest.texts))) for n, (b, *_) in backends.items()}, utts)
    ger = interleaved({n: (lambda u, c=c: next(iter(c.correct([u.nbest])))) for n, (_, c, *_) in backends.items()}, utts)
    reranked = interleaved({n: (lambda u, b=b: next(correct_many([u.nbest], b, method="rerank", rerank=rerank)).chosen)
                            for n, (b, *_) in backends.items()}, utts)
    turns = interleaved({n: (lambda t, b=b: reply(t, [], b, ChatOptions()).first_sentence_s) for n, (b, *_) in backends.items()}, TURNS)
    n_hyps = sum(len(u.nbest.texts) for u in utts)
    figures = {n: {
        "load_s": round(backends[n][2], 2),
        "tokens_per_s": round(sum(gen[n][1]) / gen[n][0], 2),
        "ger_s_per_list": round(ger[n][0] / len(utts), 3),
        "rescore_s_per_hyp": round(score[n][0] / n_hyps, 4),
        "reply_first_sentence_s": round(statistics.median(turns[n][1]), 3),
        "ger_profile_s_per_list": {k: round(v / len(utts), 3) for k, v in backends[n][3].seconds.items()},
        "ger_calls_per_list": {k: round(v / len(utts), 2) for k, v in backends[n][3].calls.items()},
    } for n in backends}
    return figures, {n: {"ger": ger[n][1], "rerank": reranked[n][1], "cased": cased_picks(utts, score[n][1]),
                         "scores": [x.logprob for u in score[n][1] for x in u]} for n in backends}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lists", type=int, default=30, help="GER lists (round-robin over the six dev sets)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per chat prompt for tokens/s")
    ap.add_argument("--ct2", nargs="+", default=["ct2", "ct2_float32"], choices=["ct2", "ct2_float32"],
                    help="CTranslate2 variants measured against transformers (int8, float32)")
    args = ap.parse_args()

    from cascade import metrics
    from cascade.config import load_settings
    from cascade.ger.correct import build_prompt

    base = load_settings()
    settings = base.model_copy(update={
        "llm": base.llm.model_copy(update={"threads": args.threads}),
        "correct": base.correct.model_copy(update={"mode": "ger", "adapter": str(SHIPPED)}),
    })
    utts = dev_lists(args.lists)
    load_before = os.getloadavg()[0]
    names = ["transformers", *args.ct2]
    backends = {name: load(settings, name) for name in names}
    fig, decided = measure(backends, utts, args.max_tokens, settings.rerank)
    corr = {n: d["ger"] for n, d in decided.items()}
    refs = [u.reference or "" for u in utts]
    hf = corr["transformers"]
    tokens = backends["transformers"][0].count_tokens
    out = {
        "benchmark": "llm_speed", "threads": args.threads, "lists": len(utts), "adapter": "cascade/adapters/ger-smollm2",
        "cpus": os.cpu_count(), "loadavg_1min_start_end": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine_shared": load_before > args.threads, **fig,
        "ger_prompt_tokens_per_list": round(statistics.mean(tokens(build_prompt(u.nbest, settings.ger)) for u in utts), 1),
        "ger_output_tokens_per_list": round(statistics.mean(tokens(c.raw_output or "") for c in hf), 1),
        "wer_1best": round(100 * metrics.wer(refs, [u.nbest.texts[0] for u in utts]), 2),
        "wer_transformers": round(100 * metrics.wer(refs, [c.text for c in hf]), 2),
        "changed_transformers": sum(c.changed for c in hf),
    }
    for name in args.ct2:
        ct = corr[name]
        ratios = {k: round(fig[name][k] / fig["transformers"][k], 3)
                  for k in ("ger_s_per_list", "rescore_s_per_hyp", "reply_first_sentence_s") if fig["transformers"][k]}
        ratios["tokens_per_s"] = round(fig[name]["tokens_per_s"] / fig["transformers"]["tokens_per_s"], 3)
        out[f"{name}_over_transformers"] = ratios
        out[f"{name}_agreement"] = {
            "ger_text_identical": sum(a.text == b.text for a, b in zip(hf, ct)),
            "ger_raw_identical": sum(a.raw_output == b.raw_output for a, b in zip(hf, ct)),
            "decisions_identical": sum((a.status, a.fallback_reason) == (b.status, b.fallback_reason) for a, b in zip(hf, ct)),
            "changed": sum(c.changed for c in ct),
            "decisions_differ": [[u.id, f"{a.status}:{a.fallback_reason}", f"{b.status}:{b.fallback_reason}"]
                                 for u, a, b in zip(utts, hf, ct) if (a.status, a.fallback_reason) != (b.status, b.fallback_reason)],
            "wer": round(100 * metrics.wer(refs, [c.text for c in ct]), 2),
            "rerank_picks_identical": sum(a == b for a, b in zip(decided["transformers"]["rerank"], decided[name]["rerank"])),
            "cased_rescore_picks_identical": sum(a == b for a, b in zip(decided["transformers"]["cased"], decided[name]["cased"])),
            "score_max_abs_diff": round(max(abs(a - b) for a, b in zip(decided["transformers"]["scores"], decided[name]["scores"])), 4),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
