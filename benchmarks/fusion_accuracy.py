"""Multi-system fusion accuracy on the four deployed recognisers' LibriSpeech test-clean outputs.

Prints ONE JSON line. Per split (dev, test): WER of each system alone, NIST `rover`
(SCTK, majority vote), our rover (`our_rover_plain`: SCTK's vote; `our_rover`: as fusion votes, a system's
silence after its last word counting fusion.tail_vote), the oracle (best system per utterance), the
agreement pick, the LLM+agreement pick and LLM fusion (zero-shot, and with
--adapter) with their weights tuned on the dev prefix only; seconds per utterance.
The rover columns use all utterances; LLM columns the first --lm-n / --llm-n of each
split (CPU time), and say so.

WER is corpus-level with cascade.metrics.normalize (whisper-normalizer) = `wer`;
`wer_plain` is lower-case/punctuation-stripped (the reference points' metric).

With --rerank: the fusion reranker (cascade.fusion.rerank) trained on every subset of >= 3 systems of dev,
reported out of fold on dev (folds by utterance), on each held-out 3-system subset (trained on the other
subsets and the other half of the speakers: the transfer check), and on every --rerank-every-th test
utterance for all four systems and for the three left when dev's best system is dropped.

    python benchmarks/fusion_accuracy.py --lm-n 100 --llm-n 20 [--adapter DIR]
    python benchmarks/fusion_accuracy.py --lm-n 0 --llm-n 0 --rerank [--save cascade/rerankers/fusion-mwer]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cascade.config import FusionOptions, load_settings  # noqa: E402
from cascade.batch.join import Joined, join  # noqa: E402
from cascade.fusion import fuse as fusion  # noqa: E402
from cascade.fusion.rover import nist_rover, rover, tokens  # noqa: E402
from cascade.metrics import normalize, wer, word_edits  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "asr-outputs" / "librispeech-test-clean"
SYSTEMS = ("deepspeech", "google", "azure", "watson")
LM_WEIGHTS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
GAINS = (-0.02, 0.0, 0.02, 0.05, 1e9)


def _wers(refs: list[str], hyps: list[str]) -> dict[str, float]:
    plain_r = [" ".join(tokens(r)) for r in refs]
    plain_h = [" ".join(tokens(h)) for h in hyps]
    return {"wer": round(100 * wer(refs, hyps), 2), "wer_plain": round(100 * wer(plain_r, plain_h, normalize=False), 2)}


def _system_text(inp, name: str) -> str:  # noqa: ANN001
    return next((o.text for o in inp.outputs if o.system == name), "")


def rover_columns(joined: Joined) -> dict[str, object]:
    """Everything that needs no LLM, on all utterances."""
    refs = [i.reference or "" for i in joined.inputs]
    out: dict[str, object] = {"n": len(refs)}
    for name in joined.systems:
        out[name] = _wers(refs, [_system_text(i, name) for i in joined.inputs])
    plain = [{i.id: tokens(_system_text(i, n)) for i in joined.inputs} for n in joined.systems]
    t = time.perf_counter()
    nist = nist_rover(plain)
    out["nist_rover"] = {**_wers(refs, [nist[i.id] for i in joined.inputs]),
                         "s_per_utt": round((time.perf_counter() - t) / len(refs), 5)}
    t = time.perf_counter()
    ours_plain = [rover([p[i.id] for p in plain]).text for i in joined.inputs]
    out["our_rover_plain"] = {**_wers(refs, ours_plain), "s_per_utt": round((time.perf_counter() - t) / len(refs), 5),
                              "identical_to_nist": sum(a == nist[i.id] for a, i in zip(ours_plain, joined.inputs))}
    for method, key in (("rover", "our_rover"), ("rescore", "agreement_pick")):
        t = time.perf_counter()
        if method == "rover":
            fused = [c.text for c in fusion.fuse_many(joined.inputs, "rover")]
        else:
            fused = [_agreement_pick(i) for i in joined.inputs]
        out[key] = {**_wers(refs, fused), "s_per_utt": round((time.perf_counter() - t) / len(refs), 5)}
    out["oracle"] = _wers(refs, [_oracle(i) for i in joined.inputs])
    rel = estimate(joined, joined.systems)  # reference-free, from the whole split
    out["estimated_wer"] = {s.system: round(100 * s.wer, 2) for s in rel.systems}
    out["estimated_best"] = rel.best
    out["fallback"] = rel.fallback
    weighted = [c.text for c in fusion.fuse_many(joined.inputs, "rover", options=FusionOptions(weights=rel.weights))]
    out["weighted_rover"] = _wers(refs, weighted)
    return out


def _agreement_pick(inp) -> str:  # noqa: ANN001
    p = fusion._prepare(inp, FusionOptions())
    best = max(range(len(p.candidates)), key=lambda k: (p.agreements[k], -k))
    return " ".join(p.candidates[best])


def _oracle(inp) -> str:  # noqa: ANN001
    ref = normalize(inp.reference or "").split()
    texts = [normalize(o.text) for o in inp.outputs]
    return min(texts, key=lambda t: word_edits(ref, t.split()))


def llm_features(joined: Joined, n: int, backend, ger_generate: bool, adapter: str | None, batch: int):  # noqa: ANN001, ANN201
    """FusionCandidates for the first n utterances (LLM output included when ger_generate), with timing."""
    settings = load_settings()
    opts = FusionOptions()
    prepared = [fusion._prepare(i, opts) for i in joined.inputs[:n]]
    t = time.perf_counter()
    feats = []
    for k in range(0, len(prepared), batch):
        chunk = prepared[k : k + batch]
        if ger_generate:
            feats += fusion.llm_candidates(chunk, backend, opts, settings.ger, adapter)
        else:
            texts = [" ".join(c) for p in chunk for c in p.candidates]
            lm = iter(fusion._lm_per_word(backend, texts, adapter))
            feats += [fusion.FusionCandidates(texts=tuple(" ".join(c) for c in p.candidates), sources=tuple(p.sources),
                                              agreement=tuple(p.agreements), lm=tuple(next(lm) for _ in p.candidates))
                      for p in chunk]
    return prepared, feats, (time.perf_counter() - t) / max(n, 1)


def _apply(prepared, feats, lm_weight: float, gain: float) -> list[str]:  # noqa: ANN001
    opts = FusionOptions(lm_weight=lm_weight, min_agreement_gain=gain)
    return [fusion.pick(f, p, opts).text for p, f in zip(prepared, feats)]


def tune_and_report(dev, test, refs_dev, refs_test, generate: bool) -> dict[str, object]:  # noqa: ANN001
    """Grid-search (lm_weight, gain) on dev; report dev and test WER, acceptance and rover on the same prefix."""
    grid = list(itertools.product(LM_WEIGHTS, GAINS if generate else (1e9,)))
    best = min(grid, key=lambda g: (wer(refs_dev, _apply(*dev[:2], *g)), g[0]))
    out: dict[str, object] = {"lm_weight": best[0], "min_agreement_gain": best[1] if generate else None}
    for split, (prepared, feats, secs), refs in (("dev", dev, refs_dev), ("test", test, refs_test)):
        fused = _apply(prepared, feats, *best)
        rov = [" ".join(p.rover_words) for p in prepared]
        row = {"n": len(refs), **_wers(refs, fused), "rover_same_n": _wers(refs, rov)["wer"], "s_per_utt": round(secs, 3)}
        if generate:
            picks = [fusion.pick(f, p, FusionOptions(lm_weight=best[0], min_agreement_gain=best[1]))
                     for p, f in zip(prepared, feats)]
            row["llm_output_kept"] = sum(c.guards.get("picked") == "llm" for c in picks)
            row["llm_output_rejected_by_guards"] = sum(f.rejected is not None for f in feats)
        out[split] = row
    return out


# --------------------------------------------------------------------------- rerank fusion


def subsets(systems: tuple[str, ...], k_min: int = 2) -> list[tuple[str, ...]]:
    """Every subset of at least k_min systems: the dev groups the fusion reranker trains on."""
    return [c for k in range(k_min, len(systems) + 1) for c in itertools.combinations(systems, k)]


def label(systems: tuple[str, ...]) -> str:
    return "+".join(systems)


def only(joined: Joined, systems: tuple[str, ...]) -> list:
    """The joined inputs as if only `systems` had been joined."""
    out = []
    for inp in joined.inputs:
        outs = tuple(o for o in inp.outputs if o.system in systems)
        if outs:
            out.append(inp.model_copy(update={"outputs": outs}))
    return out


def estimate(joined: Joined, systems: tuple[str, ...]):  # noqa: ANN201
    """Each system's reliability estimated from the whole split as `systems` alone would see it (no references)."""
    from cascade.fusion.reliability import choose_fallback, estimate as est

    inputs = only(joined, systems)
    return choose_fallback(inputs, est(inputs, systems))


def restrict(joined: Joined, systems: tuple[str, ...], every: int = 1, rel=None) -> list:  # noqa: ANN001
    """Prepared utterances (weighted ROVER + candidates) seeing only `systems`; every k-th utterance (spans all
    speakers). `rel`: the systems' reliability (default: estimated from the whole split, reference-free)."""
    rel = rel or estimate(joined, systems)
    opts = FusionOptions(weights=rel.weights, fallback=rel.fallback)
    return [fusion._prepare(inp, opts) for inp in only(joined, systems)[::every]]


def _columns(prepared: list, systems: tuple[str, ...], picks: list[str]) -> dict[str, object]:
    """Best single system (chosen on these utterances with the references: a hindsight baseline), the estimated best
    (the fallback, chosen without references), plain and weighted ROVER, rerank fusion, oracle."""
    refs = [p.inp.reference or "" for p in prepared]
    single = {n: _wers(refs, [_system_text(p.inp, n) for p in prepared])["wer"] for n in systems}
    best = min(single, key=single.get)
    full = next((p for p in prepared if len(p.inp.outputs) == len(systems) and p.best_system is not None), None)
    est = full.inp.outputs[full.best_system].system if full else best
    plain = [rover([fusion._words(o.text, FusionOptions()) for o in p.inp.outputs]).text for p in prepared]
    row = {"n": len(refs), "singles": single, "best_single": best, "best_single_wer": single[best],
           "estimated_best": est, "estimated_best_wer": single[est],
           "rover": _wers(refs, plain)["wer"], "weighted_rover": _wers(refs, [" ".join(p.rover_words) for p in prepared])["wer"],
           "rerank": _wers(refs, picks)["wer"], "oracle": _wers(refs, [_oracle(p.inp) for p in prepared])["wer"],
           "fallback": "rover" if prepared and prepared[0].base == 0 else "best_system",
           "fallback_wer": _wers(refs, [" ".join(p.candidates[p.base]) for p in prepared])["wer"],
           "changed_from_fallback": sum(t != " ".join(p.candidates[p.base]) for t, p in zip(picks, prepared))}
    row["not_worse_than_best_single"] = row["rerank"] <= row["best_single_wer"]
    row["below_both"] = row["rerank"] < min(row["rover"], row["best_single_wer"])
    return row


def _oof_picks(data: list, prepared: list, l2: float, margin: float) -> list[str]:
    from cascade.fusion import rerank
    from cascade.ger import rerank as nbest_rerank

    scores = rerank.oof_scores(data, [str(p.inp.id) for p in prepared], l2)
    return [" ".join(p.candidates[rerank.order(p)[nbest_rerank.decide(nbest_rerank._masked(s, d), margin)[0]]])
            for s, d, p in zip(scores, data, prepared)]


def held_out_subsets(groups: dict[str, list], lm: dict) -> dict[str, object]:
    """Transfer check on dev: for each subset of 3 systems, train on the OTHER subsets' lists of one half of the
    utterances (split by speaker) and fuse this subset on the other half, both ways round. Where the best
    vendor is left out, one remaining system is far better than the rest, as on the corpus in issue 15."""
    from cascade.fusion import rerank

    out = {}
    for held in [g for g in groups if g.count("+") == 2]:
        picks: dict[str, str] = {}
        for half in (0, 1):
            train = {g: [p for p in ps if _half(p) != half] for g, ps in groups.items() if g != held}
            model = rerank.train(train, lm).model
            for p in groups[held]:
                if _half(p) == half:
                    picks[p.inp.id] = rerank.pick(p, rerank.candidate_features(p, lm), model, None).text
        prepared = groups[held]
        out[held] = _columns(prepared, tuple(held.split("+")), [picks[p.inp.id] for p in prepared])
    return out


def _half(p) -> int:  # noqa: ANN001
    """Speaker-based half of the dev utterances (LibriSpeech ids: speaker-chapter-utterance)."""
    return int(p.inp.id.split("-")[0]) % 2


def _summary(rows: dict[str, dict]) -> dict[str, object]:
    """How many subsets fusion left no worse than their best single system, and the worst excess."""
    excess = {g: round(r["rerank"] - r["best_single_wer"], 2) for g, r in rows.items()}
    return {"subsets": len(rows), "not_worse_than_best_single": sum(v <= 0 for v in excess.values()),
            "worst_excess": max(excess.values()), "estimated_best_right": sum(r["estimated_best"] == r["best_single"]
                                                                            for r in rows.values())}


def rerank_columns(joined: dict[str, Joined], backend, settings, every: int, save: str | None,  # noqa: ANN001
                   held_out: bool = False) -> dict[str, object]:
    """Train the fusion reranker on every subset (pairs, triples, all four) of dev, each weighted by its own
    reference-free reliability estimate; report dev (out of fold) and test (every subset). Without a backend
    the LM features are left out (the model then needs no LLM)."""
    from cascade.fusion import rerank

    t0 = time.perf_counter()
    dev = {label(c): restrict(joined["dev"], c) for c in subsets(SYSTEMS)}
    lm = rerank.lm_scores([p for ps in dev.values() for p in ps], backend, settings.home) if backend else {}
    llm = settings.llm.model if backend else None
    sources = [f"../shared/data/asr-outputs/librispeech-test-clean/dev/{n}.csv" for n in SYSTEMS]
    trained = rerank.train(dev, lm, llm=llm or "none", sources=sources)
    model = trained.model
    out: dict[str, object] = {"llm": llm, "l2": model.l2[rerank.STYLE],
                              "margin": model.margins[rerank.STYLE],
                              "weights": dict(zip(model.features, [round(w, 4) for w in model.weights[rerank.STYLE]])),
                              "train_seconds": round(time.perf_counter() - t0, 1)}
    data = [rerank.list_data(g, p, lm) for g, ps in dev.items() for p in ps]
    flat = [p for ps in dev.values() for p in ps]
    picks = iter(_oof_picks(data, flat, model.l2[rerank.STYLE], model.margins[rerank.STYLE]))
    out["dev_out_of_fold"] = {g: _columns(ps, tuple(g.split("+")), [next(picks) for _ in ps]) for g, ps in dev.items()}
    out["dev_out_of_fold_summary"] = _summary(out["dev_out_of_fold"])
    if held_out:
        out["dev_held_out_subset"] = held_out_subsets(dev, lm)
    out["test"] = {"every": every}
    for c in subsets(SYSTEMS):
        prepared = restrict(joined["test"], c, every)
        lm_test = rerank.lm_scores(prepared, backend, settings.home) if backend else {}
        fused = [rerank.pick(p, rerank.candidate_features(p, lm_test), model, None).text for p in prepared]
        out["test"][label(c)] = _columns(prepared, c, fused)
    out["test_summary"] = _summary({k: v for k, v in out["test"].items() if k != "every"})
    sample = restrict(joined["test"], SYSTEMS, every)[:64]
    t = time.perf_counter()
    rerank.rerank(sample, backend, model=_saved(model, save))  # uncached LLM scoring (if any): the real cost
    out["s_per_utt"] = round((time.perf_counter() - t) / len(sample), 4)
    return out


def synthetic(joined: dict[str, Joined], model: str, rate: float = 0.35, seed: int = 0, every: int = 1) -> dict[str, object]:
    """Make one system far better or far worse on purpose: degrade systems of Google + Azure + Watson (drop and
    replace `rate` of their words, seeded). Reports each estimate, the fallback and fusion against the best single."""
    import random

    from cascade.fusion import rerank

    base = ("google", "azure", "watson")
    out: dict[str, object] = {"rate": rate, "systems": list(base), "test_every": every}
    for split, j in joined.items():
        vocab = sorted({w for i in j.inputs for o in i.outputs for w in normalize(o.text).split()})
        cases = {f"{d}_degraded": (d,) for d in base} | {f"only_{k}_intact": tuple(n for n in base if n != k) for k in base}
        rows = {}
        for case, spoil in cases.items():
            rng = random.Random(seed)
            inputs = [i.model_copy(update={"outputs": tuple(
                o.model_copy(update={"text": _degrade(normalize(o.text).split(), rng, rate, vocab)}) if o.system in spoil else o
                for o in i.outputs if o.system in base)}) for i in j.inputs]
            fake = Joined(systems=base, inputs=inputs)
            rel = estimate(fake, base)
            prepared = restrict(fake, base, every if split == "test" else 1, rel=rel)
            fused = [c.text for c in rerank.rerank(prepared, None, model=model)]
            rows[case] = {**_columns(prepared, base, fused), "estimated_wer": {s.system: round(100 * s.wer, 2) for s in rel.systems},
                          "lowest_weight": min(rel.systems, key=lambda s: s.weight).system}
        out[split] = rows
    return out


def _degrade(words: list[str], rng, rate: float, vocab: list[str]) -> str:  # noqa: ANN001
    out = []
    for w in words:
        x = rng.random()
        if x < rate / 2:
            continue  # deleted
        out.append(rng.choice(vocab) if x < rate else w)  # substituted, or kept
    return " ".join(out)


TAILS = (0.0, 0.25, 0.5, 0.75, 1.0)
BONUSES = (0.0, 0.1, 0.25, 0.5, 1.0)


def choose_vote(joined: Joined) -> dict[str, object]:
    """The fold check behind fusion.tail_vote and fusion.best_bonus, on dev only: for each pair of values, the weighted
    vote's WER minus the best single system's, summed over every subset of >= 2 systems, on all of dev and on each
    speaker half (weights estimated without references on the utterances scored)."""
    from cascade.fusion.reliability import estimate as est
    from cascade.fusion.reliability import vote_weights

    out: dict[str, object] = {"tails": list(TAILS), "bonuses": list(BONUSES)}
    halves = {"all": joined.inputs, **{f"speaker_half_{h}": [i for i in joined.inputs if _half_id(i.id) == h]
                                       for h in (0, 1)}}
    for name, inputs in halves.items():
        refs = [i.reference or "" for i in inputs]
        excess = {f"{t}/{b}": 0.0 for t in TAILS for b in BONUSES}
        for c in subsets(SYSTEMS):
            sub = only(Joined(systems=SYSTEMS, inputs=inputs), c)
            words = [[normalize(_system_text(i, n)).split() for n in c] for i in sub]
            best = min(wer(refs, [" ".join(w[k]) for w in words]) for k in range(len(c)))
            rel = est(sub, c)
            for t in TAILS:
                for b in BONUSES:
                    votes = vote_weights([rel.weights[n] for n in c], b)
                    fused = [rover(w, votes, tail=t).text for w in words]
                    excess[f"{t}/{b}"] += 100 * (wer(refs, fused) - best)
        out[name] = {k: round(v, 2) for k, v in excess.items()}
    return out


def _half_id(utt: str | None) -> int:
    return int((utt or "0").split("-")[0]) % 2


def _saved(model, save: str | None) -> str:  # noqa: ANN001
    """Write the model (and its card) to `save`, or to a temporary directory; its path for load_model."""
    import tempfile

    from cascade.fusion import rerank
    from cascade.ger.rerank import save_model

    out = Path(save) if save else Path(tempfile.mkdtemp(prefix="fusion-rerank-"))
    save_model(model, out)
    (out / "README.md").write_text(rerank.model_card(model))
    rerank.load_model.cache_clear()
    return str(out)


def report_rows(joined: dict[str, Joined], baseline: str) -> list:
    """Per-utterance rows for the HTML report: the best single system (as the 1-best), our rover, the oracle."""
    from cascade.report import BASELINE, ReportRow

    rows = []
    for split, j in joined.items():
        fused = [c.text for c in fusion.fuse_many(j.inputs, "rover")]
        rows += [ReportRow(dataset=split, id=i.id, reference=i.reference,
                           outputs={BASELINE: _system_text(i, baseline), "rover": f, "oracle": _oracle(i)})
                 for i, f in zip(j.inputs, fused)]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm-n", type=int, default=100, help="utterances per split for the LLM+agreement pick")
    ap.add_argument("--llm-n", type=int, default=20, help="utterances per split for LLM fusion (generation)")
    ap.add_argument("--adapter", default=None, help="LoRA adapter trained on dev fusion data (train-ger)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rerank", action="store_true", help="train the fusion reranker on dev (every subset of >= 2 "
                    "systems), report it out of fold on dev, on held-out subsets, and on every subset of test")
    ap.add_argument("--rerank-lm", action="store_true", help="give the reranker the LLM's scores as features too "
                    "(off: the shipped model needs no LLM)")
    ap.add_argument("--rerank-every", type=int, default=1, help="test: every k-th utterance for the reranker "
                    "(with --rerank-lm, LLM scoring on CPU; spans all speakers)")
    ap.add_argument("--held-out", action="store_true", help="with --rerank: the transfer check (each 3-system subset "
                    "fused by a model trained on the other subsets and the other half of the dev speakers)")
    ap.add_argument("--synthetic", action="store_true", help="degrade systems of Google + Azure + Watson on purpose "
                    "(one far worse, or one far better than the rest) and fuse with the shipped (or --save'd) reranker")
    ap.add_argument("--choose-vote", action="store_true", help="the dev fold check behind fusion.tail_vote and "
                    "fusion.best_bonus (summed excess over the best single system, all of dev and each speaker half)")
    ap.add_argument("--save", default=None, help="write the trained fusion reranker (model.json + card) here")
    ap.add_argument("--report", default=None, help="also write an HTML report (rover and oracle against the best "
                    "single system on dev, per utterance)")
    args = ap.parse_args()
    paths = {s: [DATA / s / f"{n}.csv" for n in SYSTEMS] for s in ("dev", "test")}
    joined = {s: join(p) for s, p in paths.items()}
    result: dict[str, object] = {"benchmark": "fusion_accuracy", "systems": list(SYSTEMS),
                                 "data": "../shared/data/asr-outputs/librispeech-test-clean/{dev,test}",
                                 **{s: rover_columns(j) for s, j in joined.items()}}
    if args.lm_n or args.llm_n:
        from cascade.llm import load_backend

        settings = load_settings()
        backend = load_backend(settings.llm, settings.home)
        result["llm"] = settings.llm.model
        refs = {s: [i.reference or "" for i in j.inputs] for s, j in joined.items()}
        if args.lm_n:
            feats = {s: llm_features(j, args.lm_n, backend, False, None, 32) for s, j in joined.items()}
            result["llm_agreement_pick"] = tune_and_report(feats["dev"], feats["test"], refs["dev"][: args.lm_n],
                                                           refs["test"][: args.lm_n], generate=False)
        variants = [("llm_fusion_zero_shot", None)] + ([("llm_fusion_adapter", args.adapter)] if args.adapter else [])
        for key, adapter in variants if args.llm_n else []:
            feats = {s: llm_features(j, args.llm_n, backend, True, adapter, args.batch) for s, j in joined.items()}
            result[key] = tune_and_report(feats["dev"], feats["test"], refs["dev"][: args.llm_n],
                                          refs["test"][: args.llm_n], generate=True)
        if not args.adapter:
            result["llm_fusion_adapter"] = "not run: no --adapter given"
    if args.rerank:
        from cascade.llm import load_backend

        settings = load_settings() if args.rerank_lm else None
        backend = load_backend(settings.llm, settings.home) if settings else None
        result["rerank_fusion"] = rerank_columns(joined, backend, settings, args.rerank_every, args.save, args.held_out)
    if args.choose_vote:
        result["choose_vote"] = choose_vote(joined["dev"])
    if args.synthetic:
        result["synthetic"] = synthetic(joined, args.save or FusionOptions().reranker, every=args.rerank_every)
    if args.report:
        from cascade import report

        best = min(SYSTEMS, key=lambda n: result["dev"][n]["wer"])  # chosen on dev
        report.write(args.report, report_rows(joined, best), title=f"Fusion of {', '.join(SYSTEMS)} "
                     f"(1-best = {best}, the best single system on dev)", summary={"llm": result.get("llm", "not run")})
        result["report"] = args.report
    print(json.dumps(result))


if __name__ == "__main__":
    main()
