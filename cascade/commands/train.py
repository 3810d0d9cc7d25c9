"""`cascade make-nbest` (GER training data) and `cascade train-ger` (LoRA adapters)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated

import typer

from cascade.commands.common import cli_errors, console, err_console, settings
from cascade.commands.options import LimitOpt, config_default, old_names
from cascade.commands.progress import progress
from cascade.types import InvalidInput

app = typer.Typer()


@app.command("make-nbest")
@cli_errors
def make_nbest(
    inputs: Annotated[list[str], typer.Argument(help="Text files (one sentence a line), HyPoradise JSON (its references are spoken) or JSONL manifests with audio + text; FILE@N samples N, FILE@A:B slices.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HyPoradise JSON file to write.")],
    limit: Annotated[int | None, typer.Option(help="Use at most this many sentences per input (seeded sample).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="ASR model decoding the N-best lists.",
                                              show_default=config_default("asr.model"))] = None,
    n_best: Annotated[int, typer.Option("--n-best", "-n", help="Hypotheses per list (deduplicated, padded).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for sampling, voices and degradations.")] = 0,
    engines: Annotated[str, typer.Option(help="Comma-separated TTS engines: piper, espeak.")] = "piper,espeak",
    keep_test_text: Annotated[bool, typer.Option(help="Do not drop sentences found in ../shared/data test splits.")] = False,
) -> None:
    """Turn text (synthesized with piper/espeak-ng and degraded) or recordings into Whisper N-best training data."""
    from cascade.config import SynthOptions
    from cascade.ger import synth

    cfg = settings(asr={"model": model, "n_best": n_best, "beam_size": max(5, n_best), "vad_filter": False})
    items = _text_items(inputs, seed, limit)
    if not keep_test_text:
        items = synth.drop_test_overlap(items, _test_sentences())
    if not items:
        raise InvalidInput("no sentences left to synthesize", param="inputs")
    opts = SynthOptions(engines=tuple(e.strip() for e in engines.split(",") if e.strip()), seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.jsonl")  # survives an interruption; rerun to continue
    records = [json.loads(line) for line in partial.read_text().splitlines()] if partial.exists() else []
    done = {r["id"] for r in records}
    todo = [it for it in items if it.id not in done]
    with progress("make-nbest", total=len(todo), unit="lists") as tick, partial.open("a", encoding="utf-8") as sink:
        for rec in synth.make_nbest(todo, opts, cfg.asr, home=cfg.home):
            records.append(rec)
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            tick()
    out.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.unlink()
    console.print(f"wrote {len(records)} N-best lists ({cfg.asr.model}, N={n_best}) to {out}")


def _text_items(specs: list[str], seed: int, limit: int | None = None) -> list:
    """The sentences (synth.TextItem) of FILE, FILE@N (a seeded sample) or FILE@A:B specs; `limit` samples the
    files given without @N."""
    from cascade.ger import synth
    from cascade.ger.train import parse_spec

    items = []
    for spec in specs:
        path, sel = parse_spec(spec)
        found = synth.read_items(path)
        found = found[sel] if isinstance(sel, slice) else found
        n = sel if isinstance(sel, int) else limit
        if n is not None and len(found) > n:
            found = random.Random(seed).sample(found, n)
        items.extend(found)
    return items


def _test_sentences() -> set[str]:
    """Sentences of ../shared/data's test splits (never trained on), when that folder is present."""
    from cascade.config import PROJECT_ROOT
    from cascade.ger import synth

    shared = PROJECT_ROOT.parent / "shared" / "data"
    return synth.test_sentences(shared) if shared.is_dir() else set()


def _domain_lm(specs: list[str], groups: dict[str, list], seed: int):
    """The domain n-gram LM of `--domain-text`: references of N-best files or lines of .txt files, without the
    training lists' own references (their features must look as on unseen input) or test-split sentences."""
    from cascade import metrics
    from cascade.ger import train as trainer
    from cascade.ger.domain_lm import DomainLm
    from cascade.ger.synth import _norm_key

    test, own = _test_sentences(), {metrics.normalize(u.reference) for us in groups.values() for u in us}
    sentences: list[str] = []
    for spec in specs:
        path, _ = trainer.parse_spec(spec)
        if not path.is_file():
            raise InvalidInput(f"--domain-text {spec}: no such file", param="domain_text")
        if path.suffix == ".txt":
            sentences += [it.text for it in _text_items([spec], seed)]
        else:
            sentences += [u.reference for u in trainer.load_data([spec], seed=seed, banned=set()) if u.reference]
    kept = [t for t in sentences if metrics.normalize(t) not in own and _norm_key(t) not in test]
    err_console.print(f"domain LM: {len(kept)} sentences ({len(sentences) - len(kept)} left out: training lists' references "
                      "or test-split text)", highlight=False)
    return DomainLm(kept)


@app.command("train-ger")
@cli_errors
def train_ger(
    data: Annotated[list[str], typer.Argument(help="HyPoradise JSON files (make-nbest output or real N-best lists); FILE@N samples N, FILE@A:B slices.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapter directory to write (peft format).")],
    base: Annotated[str | None, typer.Option(help="Base LLM: bundled name or HF directory.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")] = False,
    epochs: Annotated[float | None, typer.Option(help="Training epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per optimizer step.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Longest prompt+answer in tokens (longer ones are dropped).")] = None,
    target: Annotated[str | None, typer.Option(help="reference | composable | oracle (see LoraTrainConfig).")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Steps between dev evaluations.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Steps between checkpoints.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping patience in evaluations (0: off).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (0: default).")] = None,
    layers: Annotated[int | None, typer.Option(help="LoRA on the top N layers only (cheaper on CPU).")] = None,
) -> None:
    """Train a LoRA GER adapter with the inference prompt; the best dev-loss adapter is saved in --out."""
    from cascade.ger import train as trainer

    flags = dict(base=base, epochs=epochs, max_steps=max_steps, lr=lr, r=r, alpha=alpha, batch_size=batch_size,
                 max_length=max_length, target=target, eval_every=eval_every, save_every=save_every,
                 patience=patience, seed=seed, threads=threads, layers=layers)  # fmt: skip
    cfg = settings(train=flags)
    utts = trainer.load_data(data, seed=cfg.train.seed, banned=_test_sentences())
    with progress("train-ger", unit="steps", every=10) as tick:

        def show(ev: dict) -> None:
            dev = f" dev {ev['dev_loss']:.3f}" if "dev_loss" in ev else ""
            tick(ev["step"] - tick.count, total=ev["total"], info=f"loss {ev['loss']:.3f}{dev} ep {ev['epoch']:.2f}", now=bool(dev))

        res = trainer.train(utts, out, cfg.train, cfg.ger, home=cfg.home, resume=resume, progress=show, sources=data)
    why = "early stop" if res.stopped_early else "done"
    console.print(
        f"{why}: {res.steps} steps, best dev loss {res.best_dev_loss:.4f} at step {res.best_step}, "
        f"{res.n_train} train / {res.n_dev} dev examples, {res.seconds / 60:.1f} min -> {out}"
    )


@app.command("train-rerank", context_settings=old_names(per_set="limit"))
@cli_errors
def train_rerank(
    data: Annotated[list[str], typer.Argument(help="HyPoradise JSON/JSONL N-best files with references (dev/training splits, "
                                              "make-nbest output); each file is one data set; FILE@N samples N, FILE@A:B slices.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Reranker directory to write (model.json + README.md).")],
    name: Annotated[str | None, typer.Option(help="Model name (default: the --out directory's name).")] = None,
    limit: LimitOpt = None,
    max_wer: Annotated[float | None, typer.Option(help="Drop make-nbest lists (synthetic speech) whose 1-best WER exceeds this: "
                                                  "speech degraded past what real input looks like. Real lists are all kept.")] = None,
    distinct: Annotated[int | None, typer.Option(help="Keep the first N hypotheses of each list that differ after normalisation "
                                                 "(e.g. 5 from make-nbest --n-best 10 lists), as the recogniser's N-best does.", min=2)] = None,
    domain_text: Annotated[list[str] | None, typer.Option("--domain-text", help="In-domain text for a domain n-gram LM feature "
                           "(domain adaptation): N-best files (their references) or .txt files (one sentence a line), FILE@N / FILE@A:B. "
                           "Sentences of the training lists and of test splits are left out.")] = None,
    general: Annotated[str | None, typer.Option(help="With --domain-text or --styles: the reranker whose weights the other lists keep "
                                                "(default: the configured rerank.model; 'none' trains every style here).")] = None,
    styles: Annotated[str | None, typer.Option(help="Train only these input styles (comma-separated: plain, cased), e.g. cased on "
                                               "your own recogniser's lists; the other styles keep --general's weights.")] = None,
) -> None:
    """Train the N-best reranker (MWER, linear; abstention margin chosen out of fold so no data set gets worse)."""
    from cascade import metrics
    from cascade.ger import features, rerank
    from cascade.ger import train as trainer
    from cascade.llm import load_backend

    cfg = settings()
    groups: dict[str, list] = {}
    paths: dict[str, Path] = {}
    for spec in data:
        utts = [u for u in trainer.load_data([spec], seed=cfg.train.seed, banned=_test_sentences()) if u.reference is not None]
        if distinct:
            utts = [u.model_copy(update={"nbest": features.distinct(u.nbest, distinct)}) for u in utts]
        if max_wer is not None:
            utts = [u for u in utts if "|" not in (u.source or "") or metrics.wer([u.reference or ""], [u.nbest.texts[0]]) <= max_wer]
        path = Path(spec.partition("@")[0]).resolve()
        key = path.stem if paths.setdefault(path.stem, path) == path else f"{path.parent.name}/{path.stem}"
        groups.setdefault(key, []).extend(utts[:limit])  # one group per file: the margin keeps each no worse
    domain = _domain_lm(domain_text, groups, cfg.train.seed) if domain_text else None
    general = general or cfg.rerank.model
    only = tuple(x.strip() for x in styles.split(",") if x.strip()) if styles else None
    if only and not set(only) <= {"plain", "cased"}:
        raise InvalidInput(f"--styles {styles!r}: expected plain and/or cased", param="styles")
    base = rerank.load_model(general) if (domain is not None or only) and general.lower() != "none" else None
    backend = load_backend(cfg.llm, cfg.home)
    err_console.print(f"train-rerank: {sum(map(len, groups.values()))} lists, LLM features cached in {cfg.home}", highlight=False)
    with progress("train-rerank", total=1, unit="models") as tick:
        model = rerank.train(groups, backend, name=name or out.name, home=cfg.home, sources=[*data, *(f"domain: {d}" for d in domain_text or ())],
                             domain=domain, general=base, styles=only)
        tick()
    rerank.save_model(model, out, domain)
    (out / "README.md").write_text(rerank.model_card(model))
    for g, v in model.dev.items():
        label = g if "(" in g else f"{g} ({v['style']})"
        console.print(f"{label}: {v['lists']} lists, dev WER (out of fold) {v['1-best']:.2f} -> {v['rerank']:.2f}", highlight=False)
    styles = ", ".join(f"{k}: margin {m:g}, l2 {model.l2[k]:g}" for k, m in model.margins.items()) or "no style gained: keeps the 1-best"
    console.print(f"{styles} -> {out}", highlight=False)
