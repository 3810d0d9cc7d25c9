"""LoRA training of GER adapters: the inference prompt in, the transcription out, loss on the answer only.

The prompt is built by the same function inference uses (`cascade.ger.build_prompt`), so an
adapter never sees a layout at run time that it was not trained on. Targets favour copying:
when the reference equals a hypothesis the target is that hypothesis verbatim, and by default
(`target="composable"`) a reference containing a word that no hypothesis has is replaced by
the oracle hypothesis, so the adapter is never taught to invent words (trained on plain references,
an early run doubled out-of-domain WER, 3.1 -> 5.8: docs/guides/training.md). Training is seeded, checkpointed (`resume=True` continues the latest
checkpoint), evaluated on a held-out dev split and stopped early when dev loss stalls; the
best adapter is saved as a standard peft directory with a peft-style config and a model card.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.config import GerOptions, LoraTrainConfig
from cascade.metrics import word_edits
from cascade.types import InvalidInput, Utterance

logger = logging.getLogger(__name__)

CONFIG_NAME = "training_config.json"
STATE_NAME = "trainer_state.json"
CARD_NAME = "README.md"


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    target: str
    """The answer exactly as the model must write it (ends with the response end token)."""
    copy_index: int | None
    """Index of the hypothesis the target copies (None when the target is new text)."""


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    steps: int
    best_step: int
    best_dev_loss: float
    stopped_early: bool
    n_train: int
    n_dev: int
    seconds: float


# --------------------------------------------------------------------------- targets


def _words(text: str) -> list[str]:
    from cascade.metrics import normalize

    return normalize(text).split()


def choose_target(utt: Utterance, mode: str) -> tuple[str, int | None]:
    """The text the adapter learns to write for this N-best list, and which hypothesis it copies."""
    ref = utt.reference or ""
    hyps = utt.nbest.texts
    ref_w = _words(ref)
    hyp_w = [_words(h) for h in hyps]
    for i, hw in enumerate(hyp_w):
        if hw == ref_w:
            return hyps[i], i
    oracle = min(range(len(hyps)), key=lambda i: (word_edits(ref_w, hyp_w[i]), i))
    if mode == "oracle":
        return hyps[oracle], oracle
    if mode == "composable" and not set(ref_w) <= {w for hw in hyp_w for w in hw}:
        return hyps[oracle], oracle
    return restyle(ref, hyps), None


_EDGE = ",.;:!?\"'()[]"


def restyle(reference: str, hypotheses: Sequence[str]) -> str:
    """A reference in another style than cased hypotheses (speechocean762's upper-case prompts, LibriSpeech's lower
    case without punctuation) written the way the hypotheses write (Whisper's case and final punctuation), so an
    adapter trained on it does not learn to shout or drop punctuation: each word takes the spelling of a hypothesis
    word that normalises alike (else lower case), the first word is capitalised, and the 1-best's sentence end is
    kept. A reference in the hypotheses' style is returned as it is."""
    from cascade.ger.features import detect_style
    from cascade.metrics import normalize

    other = reference.isupper() or detect_style([reference]) == "plain"
    if not any(ch.isalpha() for ch in reference) or not other or detect_style(hypotheses) != "cased" \
            or all(h.isupper() for h in hypotheses if h.strip()):
        return reference
    seen: dict[str, str] = {}
    toks = [h.split() for h in hypotheses]
    for tok in (t for ts in toks for t in ts[1:]):  # a word inside a sentence shows its own case
        seen.setdefault(normalize(tok), tok.strip(_EDGE))
    for tok in (ts[0] for ts in toks if ts):  # a sentence's first word only its case after the capital
        seen.setdefault(normalize(tok), tok.strip(_EDGE)[:1].lower() + tok.strip(_EDGE)[1:])
    words = [seen.get(normalize(w)) or w.lower().strip(_EDGE) for w in reference.split()]
    words = [w.capitalize() if w == "i" or w.startswith("i'") else w for w in words if w]
    if not words:
        return reference
    words[0] = words[0][:1].upper() + words[0][1:]
    best = hypotheses[0].rstrip() if hypotheses else ""
    return " ".join(words) + (best[-1] if best[-1:] in (".", "?", "!") else "")


def build_examples(utts: Sequence[Utterance], cfg: LoraTrainConfig, ger: GerOptions) -> list[Example]:
    """Prompts rendered by the inference prompt builder, with the chosen targets."""
    from cascade.ger import build_training_example

    out = []
    for utt in utts:
        if not utt.reference or not any(t.strip() for t in utt.nbest.texts):
            continue
        target, idx = choose_target(utt, cfg.target)
        prompt, response = build_training_example(utt.nbest, target, ger)
        out.append(Example(utt.id, prompt, response, idx))
    if not out:
        raise InvalidInput("no usable training examples (each needs hypotheses and a reference)", param="data")
    return out


def parse_spec(spec: str) -> tuple[Path, slice | int | None]:
    """`file.json`, `file.json@300` (seeded sample of 300) or `file.json@100:200` (a slice)."""
    path, _, sel = str(spec).partition("@")
    if not sel:
        return Path(path), None
    try:
        if ":" in sel:
            a, b = sel.split(":", 1)
            return Path(path), slice(int(a) if a else None, int(b) if b else None)
        return Path(path), int(sel)
    except ValueError as exc:
        raise InvalidInput(f"bad data selector {spec!r}: use FILE@N or FILE@A:B", param="data") from exc


def load_data(specs: Sequence[str | Path], seed: int = 0, banned: set[str] | None = None) -> list[Utterance]:
    """HyPoradise JSON files (see parse_spec); ids get the file stem; test-split sentences are dropped."""
    from cascade.formats.hyporadise import load_hyporadise
    from cascade.ger.synth import _norm_key, _reject_test_path

    utts: list[Utterance] = []
    for spec in specs:
        path, sel = parse_spec(str(spec))
        if not path.is_file():
            raise InvalidInput(f"training data not found: {path}", param="data")
        _reject_test_path(path)
        loaded = load_hyporadise(path)
        loaded = loaded[sel] if isinstance(sel, slice) else loaded
        loaded = [u for u in loaded if not banned or _norm_key(u.reference or "") not in banned]
        if isinstance(sel, int) and sel < len(loaded):
            loaded = random.Random(seed).sample(loaded, sel)
        utts.extend(u.model_copy(update={"id": f"{path.stem}/{u.id}"}) for u in loaded)
    if not utts:
        raise InvalidInput(f"training data is empty: {', '.join(map(str, specs))}", param="data")
    return utts


def split_dev(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(examples) * fraction)) if fraction > 0 and len(examples) > 1 else 0
    dev = [examples[i] for i in order[:n_dev]]
    train = [examples[i] for i in order[n_dev:]]
    return train, dev


# --------------------------------------------------------------------------- tensors


def encode(examples: Sequence[Example], tok: Any, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example; labels mask the prompt (-100) so loss is on the answer only."""
    rows = []
    dropped = 0
    for ex in examples:
        p = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        r = tok(ex.target, add_special_tokens=False)["input_ids"]
        if len(p) + len(r) > max_length:
            dropped += 1
            continue
        rows.append((p + r, [-100] * len(p) + r))
    if dropped:
        logger.warning("dropped %d examples longer than max_length=%d tokens", dropped, max_length)
    return rows


def _batches(rows: list[tuple[list[int], list[int]]], batch_size: int, seed: int) -> list[list[int]]:
    """Seeded shuffle, then length-grouped batches (less padding: CPU time is the budget)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    group = batch_size * 16
    batches = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g : g + group], key=lambda i: len(rows[i][0]))
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    random.Random(seed + 1).shuffle(batches)
    return batches


def _collate(rows: list[tuple[list[int], list[int]]], idx: list[int], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(rows[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for k, i in enumerate(idx):
        x, y = rows[i]
        ids[k, : len(x)] = torch.tensor(x)
        labels[k, : len(y)] = torch.tensor(y)
        mask[k, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def dev_loss(model: Any, rows: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int) -> float:
    """Token-weighted mean answer loss on the dev rows."""
    import torch

    if not rows:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(rows), batch_size):
            batch = _collate(rows, list(range(b, min(b + batch_size, len(rows)))), pad_id)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    model.train()
    return total / max(count, 1)


# --------------------------------------------------------------------------- training loop


ProgressFn = Callable[[dict[str, Any]], None]


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from cascade import __version__ as cascade_version

    return {"cascade": cascade_version, "peft": peft.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _peft_model(cfg: LoraTrainConfig, home: Path) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model

    from cascade.llm.hf_backend import load_hf_llm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model, tok = load_hf_llm(cfg.base, home)
    n_layers = model.config.num_hidden_layers
    top = list(range(n_layers - min(cfg.layers, n_layers), n_layers)) if cfg.layers else None
    lora = LoraConfig(
        layers_to_transform=top,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    return model, tok


def _latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    ckpts = [c for c in ckpts if (c / "state.json").exists()]
    return ckpts[-1] if ckpts else None


def _save_checkpoint(out: Path, model: Any, opt: Any, sched: Any, state: dict[str, Any], keep: int = 2) -> None:
    import torch

    ckpt = out / "checkpoints" / f"step-{state['step']:06d}"
    tmp = ckpt.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)
    for old in sorted((out / "checkpoints").glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _restore(ckpt: Path, model: Any, opt: Any, sched: Any) -> dict[str, Any]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    blob = torch.load(ckpt / "optim.pt", weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"])
    logger.info("resumed from %s", ckpt)
    return json.loads((ckpt / "state.json").read_text())


def _optimizer(model: Any, cfg: LoraTrainConfig, total: int) -> tuple[Any, Any]:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    warmup = max(1, int(0.05 * total))

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train(
    utts: Sequence[Utterance],
    out: Path,
    cfg: LoraTrainConfig,
    ger: GerOptions,
    *,
    home: Path,
    resume: bool = False,
    progress: ProgressFn | None = None,
    sources: Sequence[str] = (),
) -> TrainResult:
    """Train a LoRA adapter on HyPoradise-style utterances; the best dev-loss adapter ends up in `out`."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    ger = ger.model_copy(update={"prompt": cfg.prompt})
    examples = build_examples(utts, cfg, ger)
    train_ex, dev_ex = split_dev(examples, cfg.dev_fraction, cfg.seed)
    model, tok = _peft_model(cfg, home)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows, dev_rows = encode(train_ex, tok, cfg.max_length), encode(dev_ex, tok, cfg.max_length)
    if not rows:
        raise InvalidInput(f"no training example fits max_length={cfg.max_length} tokens", param="max_length")
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    opt, sched = _optimizer(model, cfg, total)
    state: dict[str, Any] = {"step": 0, "best_step": 0, "best_dev_loss": math.inf, "bad_evals": 0, "history": []}
    ckpt = _latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", out)
    if ckpt is not None:
        state = _restore(ckpt, model, opt, sched)
    _write_config(out, cfg, ger, sources, len(rows), len(dev_rows), examples)
    stopped = _loop(model, opt, sched, rows, dev_rows, cfg, state, total, per_epoch, pad_id, out, progress)
    if state["best_step"] == 0 or not (out / "adapter_model.safetensors").exists():
        model.save_pretrained(out)  # no dev split or no eval yet: keep the last weights
    result = TrainResult(out, state["step"], state["best_step"], state["best_dev_loss"], stopped, len(rows), len(dev_rows), time.time() - t0)
    (out / STATE_NAME).write_text(json.dumps({**state, "seconds": round(result.seconds, 1)}, indent=1, sort_keys=True))
    write_model_card(out)
    return result


def _loop(model, opt, sched, rows, dev_rows, cfg, state, total, per_epoch, pad_id, out, progress) -> bool:  # noqa: ANN001
    """Optimizer steps from state['step'] to `total`; evaluates, checkpoints and stops early in place."""
    t_start, step0, loss_ema = time.time(), state["step"], None
    while state["step"] < total:
        epoch, pos = divmod(state["step"], per_epoch)
        batches = _batches(rows, cfg.batch_size, cfg.seed + epoch)
        for idx in batches[pos:]:
            loss = model(**_collate(rows, idx, pad_id)).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            value = loss.detach().item()
            loss_ema = value if loss_ema is None else 0.9 * loss_ema + 0.1 * value
            event = {"step": state["step"], "total": total, "loss": loss_ema, "epoch": state["step"] / per_epoch}
            done = state["step"] >= total
            if dev_rows and (state["step"] % cfg.eval_every == 0 or done):
                if _evaluate(model, dev_rows, cfg, state, pad_id, out, event):
                    _save_checkpoint(out, model, opt, sched, state)
                    return True
            if state["step"] % cfg.save_every == 0 or done:
                _save_checkpoint(out, model, opt, sched, state)
            if progress:
                rate = (time.time() - t_start) / max(1, state["step"] - step0)
                progress({**event, "eta_s": rate * (total - state["step"])})
            if done:
                return False
    return False


def _evaluate(model, dev_rows, cfg, state, pad_id, out, event) -> bool:  # noqa: ANN001
    """Dev loss; saves the adapter to `out` when it improves. True when early stopping triggers."""
    loss = dev_loss(model, dev_rows, cfg.batch_size, pad_id)
    event["dev_loss"] = loss
    state["history"].append({"step": state["step"], "train_loss": round(event["loss"], 4), "dev_loss": round(loss, 4)})
    logger.info("step %d: dev loss %.4f (best %.4f)", state["step"], loss, state["best_dev_loss"])
    if loss < state["best_dev_loss"]:
        state.update(best_dev_loss=loss, best_step=state["step"], bad_evals=0)
        model.save_pretrained(out)
        return False
    state["bad_evals"] += 1
    return bool(cfg.patience) and state["bad_evals"] >= cfg.patience


# --------------------------------------------------------------------------- provenance


def _write_config(out: Path, cfg: LoraTrainConfig, ger: GerOptions, sources: Sequence[str], n_train: int, n_dev: int, examples: list[Example]) -> None:
    """Sorted JSON + version stamp, like peft's own config files."""
    from cascade.prompts import prompt_ref

    copies = sum(e.copy_index is not None for e in examples)
    first = sum(e.copy_index == 0 for e in examples)
    data = {
        "train_config": cfg.model_dump(mode="json"),
        "ger_options": ger.model_dump(mode="json"),
        "prompt": prompt_ref(ger.prompt).model_dump(),
        "data": {
            "sources": list(sources),
            "n_train": n_train,
            "n_dev": n_dev,
            "targets_copying_a_hypothesis": copies,
            "targets_copying_the_1best": first,
            "targets_new_text": len(examples) - copies,
        },
        "versions": _versions(),
    }
    (out / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_model_card(out: Path, results: dict[str, Any] | None = None) -> Path:
    """README.md beside the adapter: base, data, recipe, dev loss and (when given) benchmark WERs."""
    conf = json.loads((out / CONFIG_NAME).read_text())
    state = json.loads((out / STATE_NAME).read_text()) if (out / STATE_NAME).exists() else {}
    adapter = json.loads((out / "adapter_config.json").read_text())
    tc, data = conf["train_config"], conf["data"]
    lines = [
        "---",
        f"base_model: {adapter.get('base_model_name_or_path')}",
        "library_name: peft",
        "tags: [lora, asr, generative-error-correction]",
        "---",
        "",
        f"# GER LoRA adapter ({out.name})",
        "",
        "Hypotheses-to-transcription (HyPoradise-style) generative error correction for Whisper N-best lists,",
        f"trained with `cascade train-ger` using the inference prompt `{conf['prompt']['name']}` (hash {conf['prompt']['hash']}).",
        "",
        "## Data",
        "",
        *[f"- `{s}`" for s in data["sources"]],
        f"- {data['n_train']} training / {data['n_dev']} held-out dev examples; targets copy a hypothesis in "
        f"{data['targets_copying_a_hypothesis']} cases (the 1-best in {data['targets_copying_the_1best']}), new text in {data['targets_new_text']}.",
        "",
        "## Recipe",
        "",
        f"LoRA r={tc['r']}, alpha={tc['alpha']}, dropout={tc['dropout']} on {', '.join(tc['target_modules'])} "
        f"({'top ' + str(tc['layers']) if tc.get('layers') else 'all'} layers); "
        f"lr {tc['lr']}, batch {tc['batch_size']}, {tc['epochs']} epochs (max steps {tc['max_steps']}), max length {tc['max_length']}, "
        f"seed {tc['seed']}, target mode `{tc['target']}`, loss on the answer tokens only.",
        f"Best dev loss {state.get('best_dev_loss', float('nan')):.4f} at step {state.get('best_step')} of {state.get('step')} "
        f"({state.get('seconds', 0) / 60:.1f} min on CPU).",
        f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(conf['versions'].items()))}.",
    ]
    if results:
        lines += ["", "## Results", "", *results.get("lines", [])]
    path = out / CARD_NAME
    path.write_text("\n".join(lines) + "\n")
    return path
