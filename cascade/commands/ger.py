"""`cascade correct`, `cascade eval`, `cascade tune`: N-best rescoring and GER from the command line."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from cascade.commands.common import cli_errors, console, err_console, fail, settings
from cascade.commands.options import AdapterOpt, ConfigOut, CorrectOpt, LamOpt, LimitOpt, LlmThreadsOpt, PromptOpt, old_names, runtime
from cascade.commands.progress import progress, tracked
from cascade.config import Settings, save_yaml, user_config_path
from cascade.types import Correction, InvalidInput, NBest, Utterance

app = typer.Typer()


def _cfg(lam: float | None, adapter: str | None, prompt: str | None, constrained: bool | None = None,
         mode: str | None = None, threads: int | None = None) -> Settings:
    rescore = {"lam": lam, "profile": "none"} if lam is not None else {}  # an explicit λ overrides the style profiles
    return settings(correct={"mode": mode, "adapter": adapter}, rescore=rescore,
                    ger={"prompt": prompt, "constrained": constrained}, **runtime(threads=threads))


def _inputs(file: Path | None, hyps: list[str] | None, limit: int | None) -> list[Utterance]:
    from cascade.formats.hyporadise import load_hyporadise

    if file is not None and hyps:
        raise InvalidInput("give either a file or --hyp strings, not both", param="hyp")
    if hyps:
        return [Utterance(id="cli", nbest=NBest.from_texts([" ".join(h.split()) for h in hyps]))]
    if file is None:
        raise InvalidInput("nothing to correct: give a HyPoradise JSON/JSONL file or --hyp strings", param="file")
    return load_hyporadise(file, limit=limit)


def _explain(utt: Utterance, c: Correction) -> None:
    table = Table("#", "candidate", "AM", "LM", "combined", title=f"{utt.id}: {c.method} -> {c.status}", title_justify="left")
    for i, s in enumerate(c.scores):
        mark = "*" if (s.source == "llm" and c.chosen is None and c.status == "ok") or (s.source == "hypothesis" and i == c.chosen) else ""
        label = "llm" if s.source == "llm" else str(i)
        fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        table.add_row(f"{label}{mark}", s.text, fmt(s.am), fmt(s.lm), fmt(s.combined))
    console.print(table)
    if c.raw_output is not None:
        console.print(f"raw output: {c.raw_output!r}", highlight=False)
    if c.guards:
        console.print("guards: " + ", ".join(f"{k}={v}" for k, v in c.guards.items()), highlight=False)
    if c.fallback_reason:
        console.print(f"fallback: {c.fallback_reason}", highlight=False)


@app.command("correct", context_settings=old_names())
@cli_errors
def correct_cmd(
    file: Annotated[Path | None, typer.Argument(help="HyPoradise JSON or JSONL N-best file.")] = None,
    hyp: Annotated[list[str] | None, typer.Option("--hyp", help="A hypothesis, best first (repeat).")] = None,
    mode: CorrectOpt = "ger",
    adapter: AdapterOpt = None,
    lam: LamOpt = None,
    prompt: PromptOpt = None,
    constrained: Annotated[bool, typer.Option("--constrained", help="Snap the GER output to the nearest hypothesis.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show candidates, scores and guard decisions.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One Correction JSON per line.")] = False,
    changed: Annotated[bool, typer.Option("--changed", help="Print only the lists correction changed (1-best -> corrected), "
                                          "then how many changed and the WER before/after where references exist.")] = False,
    limit: LimitOpt = None,
    threads: LlmThreadsOpt = None,
) -> None:
    """Correct N-best lists: print one corrected transcription per utterance."""
    from cascade.correct import build_corrector

    cfg = _cfg(lam, adapter, prompt, constrained or None, mode, threads)
    utts = _inputs(file, hyp, limit)
    if not utts:
        fail(f"{file}: no N-best lists to correct")
    with progress(f"correct ({cfg.correct.mode})", total=len(utts), unit="lists") as tick:
        results = tracked(build_corrector(cfg).correct(u.nbest for u in utts), tick)
        if changed:
            _print_changes(utts, list(results), cfg.correct.mode)
        else:
            _print_corrections(utts, results, as_json, explain)


def _print_changes(utts: list[Utterance], results: list[Correction], mode: str) -> None:
    """The lists a correction changed, and what that did to the WER (the demo's second half)."""
    from cascade import metrics

    diff = [(u, c) for u, c in zip(utts, results) if metrics.normalize(c.text) != metrics.normalize(u.nbest.texts[0])]
    for u, c in diff:
        console.print(f"{u.id}: [red]{u.nbest.texts[0]}[/red] -> [cyan]{c.text}[/cyan]", highlight=False)
    line = f"{mode} changed {len(diff)} of {len(utts)} lists"
    scored = [(u, c) for u, c in zip(utts, results) if u.reference]
    if scored:
        refs = [u.reference for u, _ in scored]
        before = 100 * metrics.wer(refs, [u.nbest.texts[0] for u, _ in scored])
        after = 100 * metrics.wer(refs, [c.text for _, c in scored])
        line += f"; WER against the references {before:.2f} % -> {after:.2f} % ({len(scored)} lists)"
    console.print(f"[bold]{line}[/bold]", highlight=False)


def _print_corrections(utts: list[Utterance], results: Iterable[Correction], as_json: bool, explain: bool) -> None:
    for utt, c in zip(utts, results):
        if as_json:
            print(json.dumps({"id": utt.id, **c.model_dump(mode="json")}))
        elif explain:
            _explain(utt, c)
        else:
            print(c.text)


def _run_methods(utts: list[Utterance], methods: list[str], cfg: Settings, name: str) -> dict[str, list[str]]:
    from cascade.correct import build_corrector

    out = {}
    with progress(f"eval {name}", total=len(utts) * len(methods), unit="lists") as tick:
        for m in methods:
            res = tracked(build_corrector(cfg, m).correct(u.nbest for u in utts), tick)
            out[m if m != "ger" or not cfg.correct.adapter else "ger+lora"] = [c.text for c in res]
    return out


@app.command("eval", context_settings=old_names())
@cli_errors
def eval_cmd(
    data: Annotated[list[Path], typer.Argument(help="HyPoradise JSON/JSONL files or audio manifests (JSONL with 'audio').")],
    method: Annotated[str, typer.Option("--correct", help="Comma-separated correction modes (rescore, rerank, ger; translate: rescore, ger, via).")] = "rescore,ger",
    adapter: AdapterOpt = None,
    lam: LamOpt = None,
    prompt: PromptOpt = None,
    limit: LimitOpt = None,
    asr: Annotated[bool, typer.Option("--asr", help="Run our ASR on audio manifests even when they carry an N-best.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
    task: Annotated[Literal["transcribe", "translate"], typer.Option("--task", help="transcribe (WER) or translate (BLEU/chrF against a manifest's 'translation').")] = "transcribe",
    split: Annotated[str | None, typer.Option("--split", help="--task translate: only manifest lines of this split.")] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="CSV/TSV: the id column (default: detected).")] = None,
    text_column: Annotated[str | None, typer.Option("--text-column", help="CSV/TSV: the transcript column.")] = None,
    ref_column: Annotated[str | None, typer.Option("--ref-column", help="CSV/TSV: the reference column.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write a self-contained HTML report: WER table "
                                                "and chart, helped/hurt/neutral, largest wins and regressions.")] = None,
    threads: LlmThreadsOpt = None,
) -> None:
    """WER (normalised / raw) of 1-best, the chosen methods and the oracles o_nb, o_cp per data set.

    --task translate: BLEU/chrF of Whisper's 1-best translation beside rescore, ger (N-best fusion) and via.
    """
    from cascade import metrics
    from cascade.ger.data import load_eval_set

    cfg = _cfg(lam, adapter, prompt, threads=threads)
    if task == "translate":
        return _eval_translate(data, method, cfg, split, limit, as_json)
    if task != "transcribe":
        raise InvalidInput(f"unknown task {task!r} (transcribe, translate)", param="task")
    from cascade.correct import available

    methods = [m.strip() for m in method.split(",") if m.strip() and m.strip() != "none"]
    if unknown := [m for m in methods if m not in available()]:
        raise InvalidInput(f"unknown correction mode {unknown[0]!r}; expected one of {', '.join(available())}", param="correct")
    rows, report_rows = [], []
    for path in data:
        if path.suffix.lower() in (".csv", ".tsv"):  # a recogniser's export: columns detected (cascade.formats.tabular)
            utts = _table_utterances(path, limit, {"id_column": id_column, "text_column": text_column, "ref_column": ref_column})
        else:
            with progress(f"asr {path.name}", total=limit, unit="files") as tick:  # audio manifests: decoding is the long part
                loaded = load_eval_set(path, limit=limit, asr_options=cfg.asr if asr else None, home=cfg.home, progress=tick)
            utts = [u for u in loaded if u.reference is not None]
        if not utts:
            fail(f"{path}: no utterance with a reference to evaluate against")
        outputs = _run_methods(utts, methods, cfg, path.name)
        scores = metrics.score_methods([u.reference or "" for u in utts], [u.nbest for u in utts], outputs)
        rows += [{"data": path.name, **s.model_dump()} for s in scores]
        report_rows += _report_rows(path.stem, utts, outputs)
    if report is not None:
        from cascade import report as reports

        reports.write(report, report_rows, title=f"Evaluation: {', '.join(p.name for p in data)}")
        err_console.print(f"report -> {report}", highlight=False)
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("data", "n", "method", "WER %", "raw WER %")
    for r in rows:
        table.add_row(r["data"], str(r["n"]), r["method"], f"{100 * r['wer']:.2f}", f"{100 * r['wer_raw']:.2f}")
    console.print(table)


def _report_rows(dataset: str, utts: list[Utterance], outputs: dict[str, list[str]]) -> list:
    """One report row per utterance: 1-best, each method's text and the o_nb oracle."""
    from cascade import metrics
    from cascade.report import BASELINE, ReportRow

    return [ReportRow(dataset=dataset, id=u.id, reference=u.reference,
                      outputs={BASELINE: u.nbest.texts[0] if u.nbest.hypotheses else "",
                               **{m: texts[i] for m, texts in outputs.items()},
                               "o_nb": metrics.oracle_nbest_pick(u.reference or "", u.nbest)})
            for i, u in enumerate(utts)]


def _table_utterances(path: Path, limit: int | None, columns: dict[str, str | None]) -> list[Utterance]:
    from cascade.formats.tabular import read_table

    table = read_table(path, **{k: v for k, v in columns.items() if v is not None})
    utts = [u for u in itertools.islice(table, limit) if u.reference is not None]
    err_console.print(f"{table.columns.describe()}; {table.summary.describe()}", highlight=False, soft_wrap=True)
    return utts


def _eval_translate(data: list[Path], method: str, cfg: Settings, split: str | None, limit: int | None, as_json: bool) -> None:
    """`eval --task translate`: one table per manifest (cascade.translate.speech.evaluate)."""
    from cascade.translate import speech as T

    methods = ("none", *[m.strip() for m in method.split(",") if m.strip() not in ("", "none")])
    unknown = sorted(set(methods) - {"none", "rescore", "ger", "via"})
    if unknown:
        raise InvalidInput(f"unknown method {unknown[0]!r} for --task translate (rescore, ger, via)", param="method")
    if cfg.asr.model == "tiny.en":  # the default ASR model is English-only; translation needs a multilingual one
        cfg = cfg.model_copy(update={"asr": cfg.asr.model_copy(update={"model": "base"})})
    for path in data:
        report = T.evaluate(T.load_manifest(path, split=split)[:limit], cfg, methods)
        if as_json:
            print(report.model_dump_json())
            continue
        table = Table("method", "BLEU", "chrF (Δ BLEU / Δ chrF)", "s/utt", "changed", "fallbacks", title=f"{path.name}: {report.n} utterances")
        for row in T.report_rows(report):
            table.add_row(*row)
        console.print(table)


@app.command("tune")
@cli_errors
def tune_cmd(
    dev: Annotated[list[Path], typer.Option("--dev", help="Dev N-best data (HyPoradise JSON/JSONL); repeat for several.")],
    out: ConfigOut = None,
    limit: LimitOpt = None,
    step: Annotated[float, typer.Option("--step", help="Grid step for λ in [0, 1].", min=0.01, max=0.5)] = 0.05,
    length_norm: Annotated[Literal["none", "tokens", "words"] | None, typer.Option(
        "--length-norm", help="Length normalisation of the scores.", show_default="each one tried")] = None,
    threads: LlmThreadsOpt = None,
) -> None:
    """Choose λ and the length normalisation on dev per input style and write them as rescoring profiles.

    Lists are grouped by the style detected in their text (plain: lower case without punctuation; cased: our
    own Whisper output); each file is one dev set and a profile never makes a dev set worse than λ = 0."""
    from cascade.formats.hyporadise import load_hyporadise
    from cascade.ger.features import LmCache
    from cascade.ger.rescore import NORMS, tune_profiles
    from cascade.llm import load_backend

    cfg = settings(**runtime(threads=threads))
    sets = [(p.stem, u) for p in dev for u in load_hyporadise(p, limit=limit) if u.reference is not None]
    if not sets:
        fail("no dev utterance with a reference")
    grid = [round(i * step, 4) for i in range(int(round(1 / step)) + 1)]
    nbests = [u.nbest for _, u in sets]
    lm = LmCache(load_backend(cfg.llm, cfg.home), cfg.home).get([h.text for nb in nbests for h in nb.hypotheses])
    norms = (length_norm,) if length_norm else NORMS
    found = tune_profiles(nbests, [u.reference or "" for _, u in sets], lm, cfg.rescore, grid, groups=[g for g, _ in sets], norms=norms)
    t = Table("style", "λ", "length norm", "dev", title="rescoring profiles (mean dev WER over the files)")
    for style, (prof, _table) in found.items():
        t.add_row(style, f"{prof.lam:.2f}", prof.length_norm, prof.note or "")
    console.print(t)
    out = out or user_config_path()
    save_yaml({"rescore": {"profiles": {k: p.model_dump(exclude_none=True) for k, (p, _) in found.items()}}}, out)
    console.print(f"profiles {', '.join(found)} written to {out} ({len(sets)} dev utterances)", highlight=False)
