"""In-process LLM on CPU with CTranslate2 (int8 by default): the fast CPU twin of the transformers backend.

The HF model (the dequantised bundled GGUF, or a user's HF directory) is converted once to a
CTranslate2 model (LlmOptions.compute_type: int8 or float32) in CASCADE_HOME/models/ct2/, keyed by
the base model, the compute type and the sha256 of the adapter's weights. CTranslate2 has no LoRA:
an adapter is merged into the base with peft's `merge_and_unload` and converted on its own, so each
adapter used gets its own `ctranslate2.Generator` (loaded on first use, kept). Tokenisation, the
document-start token, prefix scoring and stop-string handling are the transformers backend's, so
scores and texts of the two are comparable.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cascade.config import LlmOptions
from cascade.llm.base import TextScore, TokenLogprob
from cascade.llm.hf_backend import (
    DOC_START_TOKENS,
    adapter_dir,
    chat_prompt,
    score_from_tokens,
    split_at_stop,
)
from cascade.types import InvalidInput, ModelNotFound

logger = logging.getLogger(__name__)

BASE_KEY = "base"
END_OF_TURN = ("<end_of_turn>",)
"""End-of-turn tokens that are not the tokenizer's EOS (Gemma: <eos> ends a document, <end_of_turn> a reply)."""
DRAFT_MARGIN = 0.05
DRAFT_ROUNDS = 3
"""Forward passes spent checking drafts for one completion (each costs about 6 decoding steps)."""
"""nats by which a draft token must be the argmax to be taken without a decoding step (float32 logits of
the one-pass and step-by-step paths agree to ~1e-4)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _lookup(prompt: list[int], head: list[int], longest: int = 3, span: int = 64) -> list[int]:
    """What follows the last occurrence in `prompt` of head's longest suffix (up to `longest` tokens) found there."""
    for n in range(min(longest, len(head)), 0, -1):
        tail = head[-n:]
        for i in range(len(prompt) - n, -1, -1):
            if prompt[i : i + n] == tail:
                return prompt[i + n : i + n + span]
    return []


def _ctranslate2():
    """The ctranslate2 module, or a one-line error saying what to do without it."""
    try:
        import ctranslate2
    except ImportError as exc:
        raise ModelNotFound("llm.backend ct2 needs the ctranslate2 package (pip install ctranslate2), "
                            "or set llm.backend: transformers", param="backend") from exc
    return ctranslate2


def adapter_key(adapter: str) -> str:
    """sha256 (16 hex digits) of the adapter's weights file: the cache key of its merged conversion."""
    path = adapter_dir(adapter)
    weights = next(iter(sorted(path.glob("adapter_model.*"))), None)
    if weights is None:
        raise ModelNotFound(f"{adapter} has no adapter_model.safetensors", param="adapter")
    digest = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def model_key(model: str) -> str:
    """A bundled model's name, or a user directory's name plus a hash of its resolved path."""
    path = Path(model).expanduser()
    if path.is_dir():
        return f"{path.name}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    return model


def converted_dir(home: Path, model: str, key: str, quantization: str = "int8") -> Path:
    return Path(home) / "models" / "ct2" / f"{model_key(model)}-{key}-{quantization}"


def convert(model: str, home: Path, adapter: str | None, key: str, quantization: str = "int8", keep_adapters: int = 4) -> Path:
    """The CTranslate2 model for (model, adapter), converted once (atomically) into CASCADE_HOME."""
    out = converted_dir(home, model, key, quantization)
    if (out / "model.bin").is_file() and (out / ".converted").is_file():
        os.utime(out / ".converted")  # most recently used: what prune keeps
        return out
    _ctranslate2()
    from ctranslate2.converters import TransformersConverter

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.hf.", dir=out.parent))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        logger.info("converting %s%s to CTranslate2 %s in %s (once)", model, f" + {adapter}" if adapter else "", quantization, out)
        _save_plain_hf(model, home, adapter, staging)
        try:
            TransformersConverter(str(staging)).convert(str(tmp), quantization=quantization, force=True)
        except (NotImplementedError, ValueError, KeyError, OSError) as exc:
            raise ModelNotFound(f"cannot convert {model} to CTranslate2: {_one_line(exc)}", param="model") from exc
        meta = {"model": model, "adapter": str(adapter_dir(adapter)) if adapter else None, "key": key, "quantization": quantization}
        (tmp / ".converted").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished the same conversion first: keep theirs
            if not (out / ".converted").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    prune(out.parent, keep_adapters)
    return out


STALE_STAGING_S = 3600.0


def prune(root: Path, keep_adapters: int) -> list[Path]:
    """Delete all but the `keep_adapters` most recently used adapter conversions under `root` (and
    staging dirs of conversions that died over an hour ago); base models' conversions stay.

    Each adapter converted is a whole model (130 MB int8, 514 MB float32), and every new adapter
    (a training run, a test's temporary LoRA) makes a new one; "used" is the last load (convert touches
    `.converted`), so the conversion just made is the newest. Returns what was deleted.
    """
    if not root.is_dir():
        return []
    adapters: list[tuple[float, Path]] = []
    gone: list[Path] = []
    now = time.time()
    for path in root.iterdir():
        if not path.is_dir():
            continue
        if path.name.startswith("."):
            if now - path.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(path, ignore_errors=True)
                gone.append(path)
            continue
        try:
            meta = json.loads((path / ".converted").read_text())
            stamp = (path / ".converted").stat().st_mtime
        except (OSError, ValueError):
            continue  # not ours, or being written: leave it
        if meta.get("key") != BASE_KEY:
            adapters.append((stamp, path))
    adapters.sort(reverse=True)
    for _, path in adapters[keep_adapters:]:
        logger.info("deleting the CTranslate2 conversion %s (llm.ct2_keep_adapters=%d)", path, keep_adapters)
        shutil.rmtree(path, ignore_errors=True)
        gone.append(path)
    return gone


def _save_plain_hf(model: str, home: Path, adapter: str | None, dest: Path) -> None:
    """The fp32 HF model (adapter merged in) saved without `quantization_config`, as the converter wants it."""
    from cascade.llm.hf_backend import load_hf_llm

    try:
        hf, tok = load_hf_llm(model, home)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelNotFound(f"cannot load LLM {model}: {_one_line(exc)}", param="model") from exc
    if adapter:
        from peft import PeftModel

        try:
            hf = PeftModel.from_pretrained(hf, str(adapter_dir(adapter))).merge_and_unload()
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise ModelNotFound(f"cannot load LoRA adapter {adapter}: {_one_line(exc)}", param="adapter") from exc
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    hf.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


_LIVE: weakref.WeakSet[CT2Backend] = weakref.WeakSet()


@atexit.register
def _release() -> None:
    """Free every Generator before the interpreter finalises: one still alive then, once it has run a Python
    step callback (stop strings), aborts the process ("terminate called without an active exception", exit
    134) after a successful run."""
    for backend in list(_LIVE):
        backend._generators.clear()


class CT2Backend:
    """LlmBackend over `ctranslate2.Generator` (CPU, int8 or float32), one generator per adapter."""

    def __init__(self, tokenizer, *, name: str, options: LlmOptions, home: Path):
        self.tokenizer = tokenizer
        self.name = name
        self.options = options
        self.home = Path(home)
        self._generators: dict[tuple[str, str], Any] = {}
        self.context_length: int | None = None
        """Tokens the model attends over (prompt plus reply), from the HF config it was converted from."""
        self._keys: dict[tuple[str, float, int], str] = {}
        self._lock = threading.Lock()
        _LIVE.add(self)
        vocab = tokenizer.get_vocab()
        self._start = next((t for t in DOC_START_TOKENS if t in vocab), None) or tokenizer.bos_token or tokenizer.eos_token
        if self._start is None:
            raise InvalidInput("tokenizer has no BOS/EOS token to condition scoring on", param="model")
        self._eos = tokenizer.eos_token
        self._ends = [self._eos, *(t for t in END_OF_TURN if t in vocab and t != self._eos)]
        """What ends a completion: EOS, and a chat model's end of turn where it is another token (Gemma)."""

    @classmethod
    def load(cls, options: LlmOptions, home: Path) -> CT2Backend:
        from transformers import AutoTokenizer

        from cascade import models

        _ctranslate2()
        path = models.llm_dir(options.model, Path(home))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (ValueError, KeyError, OSError) as exc:
            raise ModelNotFound(f"cannot load LLM {options.model}: {_one_line(exc)}", param="model") from exc
        backend = cls(tokenizer, name=options.model, options=options, home=home)
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            backend.context_length = config.get("max_position_embeddings")
        except (OSError, ValueError):
            backend.context_length = None
        backend._generator(None)  # convert/load the base now: a bad model fails at load time
        if options.reply_compute_type and options.reply_compute_type != options.compute_type:
            backend._generator(None, options.reply_compute_type)  # the first reply does not wait for it
        return backend

    # ------------------------------------------------------------------ generators

    def _key(self, adapter: str | None) -> str:
        if not adapter:
            return BASE_KEY
        path = adapter_dir(adapter)
        weights = next(iter(sorted(path.glob("adapter_model.*"))), None)
        stat = weights.stat() if weights else None
        memo = (str(path), stat.st_mtime if stat else 0.0, stat.st_size if stat else 0)
        if memo not in self._keys:
            self._keys[memo] = adapter_key(adapter)
        return self._keys[memo]

    def _generator(self, adapter: str | None, kind: str | None = None):
        """The Generator of the base or of one merged adapter in `kind` (default llm.compute_type), converted
        and loaded on first use."""
        key = self._key(adapter)
        kind = kind or self.options.compute_type
        with self._lock:
            gen = self._generators.get((key, kind))
            if gen is None:
                ctranslate2 = _ctranslate2()
                path = convert(self.options.model, self.home, adapter, key, kind, self.options.ct2_keep_adapters)
                gen = ctranslate2.Generator(str(path), device="cpu", compute_type=kind, intra_threads=self.options.threads)
                self._generators[(key, kind)] = gen
            return gen

    # ------------------------------------------------------------------ scoring

    def prompt_logprobs(self, texts: Sequence[str], *, adapter: str | None = None) -> list[list[TokenLogprob]]:
        """Per-token log-probs of each text (the first conditioned on the document-start token)."""
        encs = [self.tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
        toks = [self.tokenizer.convert_ids_to_tokens(e["input_ids"]) for e in encs]
        scored = self._score_tokens(toks, adapter)
        return [
            [TokenLogprob(token=t, offset=o[0], logprob=v) for t, o, v in zip(tk, enc["offset_mapping"], scored.get(i, []))]
            for i, (tk, enc) in enumerate(zip(toks, encs))
        ]

    def _score_tokens(self, toks: list[list[str]], adapter: str | None) -> dict[int, list[float]]:
        """Per-token log-probs by index: one padded batch in float32; int8 batches hold texts of one length.

        int8 scores of a padded row move (by up to 0.3 nats on dev lists), so there no row is padded and a
        text scores the same whatever it is batched with. float32 padding moves nothing (|Δ| <= 1e-4 on 30
        dev lists) and one batch of five hypotheses takes a third of the time of five calls.
        """
        rows = [i for i, t in enumerate(toks) if t]
        if not rows:
            return {}
        groups: list[list[int]] = [rows]
        if self.options.compute_type != "float32":
            by_length: dict[int, list[int]] = {}
            for i in rows:
                by_length.setdefault(len(toks[i]), []).append(i)
            groups = list(by_length.values())
        gen = self._generator(adapter)
        scored: dict[int, list[float]] = {}
        for idx in groups:
            results = gen.score_batch([[self._start, *toks[i]] for i in idx], max_batch_size=self.options.batch_size, max_input_length=0)
            scored.update((i, list(r.log_probs)) for i, r in zip(idx, results))
        return scored

    def score(self, texts: Sequence[str], *, adapter: str | None = None, prefix: str = "") -> list[TextScore]:
        """Log-prob of each text after `prefix` (prefix and text tokenized together, as a server would)."""
        per_token = self.prompt_logprobs([prefix + t for t in texts], adapter=adapter)
        return [score_from_tokens(toks, len(prefix), len(prefix) + len(t)) for toks, t in zip(per_token, texts)]

    def next_logprobs(self, prompt: str, tokens: Sequence[str], *, static: str = "", reply: bool = False,
                      others: bool = False) -> list[float]:
        """log p(each of `tokens` comes next | prompt) from one pass over the prompt (after the document-start
        token, as prompt_logprobs: the same value as scoring prompt + token). `static`: a prefix of `prompt`
        that is the same on every call (a system line): CTranslate2 keeps its state and reads only the rest.
        `reply`: in the turn's reply compute type (int8: faster; the end-of-turn reader is chosen on it).
        `others`: one more value, the log-prob of the likeliest token not in `tokens`."""
        import numpy as np

        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        gen = self._generator(None, self.options.reply_compute_type if reply else None)
        toks, extra = self._static_split([self._start, *self._prompt_tokens(prompt)],
                                         [self._start, *self._prompt_tokens(static)] if static else [])
        result = gen.generate_batch([toks], max_length=1, include_prompt_in_result=False,
                                    return_logits_vocab=True, sampling_topk=1, **extra)
        logits = np.asarray(result[0].logits[0], dtype=np.float64).reshape(-1)
        top = logits.max()
        norm = top + np.log(np.exp(logits - top).sum())
        rest = [float(np.delete(logits, ids).max() - norm)] if others else []
        return [*(float(logits[i] - norm) for i in ids), *rest]

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _static_split(toks: list[str], head: list[str]) -> tuple[list[str], dict[str, Any]]:
        """(the tokens after `head`, {"static_prompt": head}) where `head` starts `toks` and leaves something after
        it (CTranslate2 keeps the head's state between calls); else (toks, {}): a head the tokenizer merged
        differently at its boundary is read as part of the prompt."""
        if not head or toks[: len(head)] != head or len(toks) == len(head):
            return toks, {}
        return toks[len(head) :], {"static_prompt": head}

    def _prompt_tokens(self, prompt: str) -> list[str]:
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InvalidInput("empty prompt: nothing to generate from", param="prompt")
        return self.tokenizer.convert_ids_to_tokens(ids)

    def _sampling(self, temperature: float) -> dict[str, Any]:
        if temperature <= 0:
            return {"sampling_topk": 1}
        return {"sampling_topk": 0, "sampling_topp": 1.0, "sampling_temperature": temperature}

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        adapter: str | None = None,
        drafts: Sequence[str | None] = (),
    ) -> list[str]:
        """Completions of raw prompts, greedy unless temperature > 0; cut at the first stop string.

        A row stops as soon as its decoded text holds a stop string (as transformers' stop_strings do).
        `drafts` (greedy, float32): a text each completion probably starts with (GER: the best hypothesis);
        it is checked in one forward pass and only the rest is decoded step by step (see _verify).
        Batches hold prompts of one token length: CTranslate2 feeds the unequal tail of padded prompts
        one token per step (slower than one prompt at a time here) and int8 rounding then makes the
        output depend on the neighbours.
        """
        if max_tokens < 1:
            raise InvalidInput("max_tokens must be >= 1", param="max_tokens")
        if not prompts:
            return []
        starts = [self._prompt_tokens(p) for p in prompts]
        stops = [s for s in stop if s]
        gen = self._generator(adapter)
        heads: list[list[int]] = [[] for _ in starts]  # ids already decided (a verified draft's prefix)
        texts: dict[int, str] = {}
        if temperature <= 0 and self.options.compute_type == "float32":
            for i, draft in enumerate(drafts):
                if draft:
                    heads[i], finished = self._speculate(gen, starts[i], draft, max_tokens, stops)
                    if finished:
                        texts[i] = self.tokenizer.decode(heads[i], skip_special_tokens=True)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(starts):
            if i not in texts:
                groups.setdefault((len(t) + len(heads[i]), len(heads[i])), []).append(i)
        bs = self.options.batch_size
        for (_, done), same in groups.items():
            for b in range(0, len(same), bs):
                idx = same[b : b + bs]
                results = gen.generate_batch(
                    [starts[i] + self.tokenizer.convert_ids_to_tokens(heads[i]) for i in idx], max_length=max_tokens - done,
                    include_prompt_in_result=False, end_token=self._ends,
                    callback=self._stopper([heads[i] for i in idx], stops) if stops else None, **self._sampling(temperature),
                )
                texts.update((i, self.tokenizer.decode(heads[i] + list(r.sequences_ids[0]), skip_special_tokens=True))
                             for i, r in zip(idx, results))
        return [split_at_stop(texts[i], stops) for i in range(len(starts))]

    def _speculate(self, gen: Any, start: list[str], draft: str, max_tokens: int, stops: Sequence[str]) -> tuple[list[int], bool]:
        """The greedy tokens that forward passes confirm, and whether they end the completion: first `draft` (+ EOS),
        then, where the model departed from it, what follows its last tokens in the prompt (a GER answer that
        changes one word goes on as a hypothesis in the prompt does), at most DRAFT_ROUNDS passes."""
        eos = self.tokenizer.eos_token_id
        ids = self.tokenizer(draft, add_special_tokens=False)["input_ids"] + [eos]
        prompt = self.tokenizer.convert_tokens_to_ids(start)
        head: list[int] = []
        for _ in range(DRAFT_ROUNDS):
            taken, ended = self._verify(gen, start, head, ids[: max(max_tokens - len(head), 0) + 1])
            head += taken
            text = self.tokenizer.decode(head, skip_special_tokens=True)
            if ended or len(head) >= max_tokens or any(s in text for s in stops):
                return head[:max_tokens], True
            ids = _lookup(prompt, head) if taken else []
            if not ids:
                break
        return head, False

    def _verify(self, gen: Any, start: list[str], head: list[int], ids: list[int]) -> tuple[list[int], bool]:
        """The tokens of `ids` after start + head that one forward pass confirms as greedy, and whether an end
        token closes them (it is not returned).

        A draft token is taken while it is the argmax by at least DRAFT_MARGIN nats; where the model
        departs from the draft by that margin its own token is taken too. A near tie stops the check,
        so step-by-step decoding decides it. float32 only: int8's one-pass and step-by-step logits differ
        by more than any useful margin (112/120 dev GER outputs kept at 1 nat).
        """
        import numpy as np

        ends = set(self.tokenizer.convert_tokens_to_ids(self._ends))
        logits = np.asarray(gen.forward_batch([start + self.tokenizer.convert_ids_to_tokens(head + ids)]))
        logits = logits[0, len(start) + len(head) - 1 :]
        top2 = np.partition(logits, -2, axis=-1)[:, -2:]
        best, gap = logits.argmax(axis=-1), top2[:, 1] - top2[:, 0]
        taken: list[int] = []
        for want, got, margin in zip(ids, best.tolist(), gap.tolist()):
            if margin < DRAFT_MARGIN:
                break
            if got in ends:
                return taken, True
            taken.append(got)
            if got != want:
                break
        return taken, False

    def _stopper(self, heads: Sequence[list[int]], stops: Sequence[str]) -> Callable[[Any], bool]:
        """A generate_batch callback that ends a row once its text (after its head ids) holds a stop string.

        Only the last few tokens are decoded each step: a stop string first appears at the end.
        """
        ids: list[list[int]] = [list(h) for h in heads]
        window = max(len(s) for s in stops) + 8

        def step(result: Any) -> bool:
            row = ids[result.batch_id]
            row.append(result.token_id)
            tail = self.tokenizer.decode(row[-window:], skip_special_tokens=True)
            return any(s in tail for s in stops)

        return step

    def stream(self, prompt: str, *, max_tokens: int, temperature: float = 0.0, adapter: str | None = None,
               static: str = "") -> Iterator[str]:
        """Text pieces of one completion as they are generated (replies speak before the end is written), in
        llm.reply_compute_type: nothing was tuned on a reply's log-probs, so int8 may decode them faster.

        `static`: a prefix of `prompt` that is the same on every call (the reply's system message): CTranslate2
        keeps its state and reads only the rest, which halves a spoken reply's prefill. Closing the iterator
        early stops the generation.
        """
        if max_tokens < 1:
            raise InvalidInput("max_tokens must be >= 1", param="max_tokens")
        toks, extra = self._static_split(self._prompt_tokens(prompt), self._prompt_tokens(static) if static else [])
        steps = self._generator(adapter, self.options.reply_compute_type).generate_tokens(
            toks, max_length=max_tokens, end_token=self._ends, **self._sampling(temperature), **extra
        )
        ids: list[int] = []
        said = ""
        try:
            for step in steps:
                if step.token in self._ends:
                    break
                ids.append(step.token_id)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # a multi-byte character is not complete yet
                    continue
                if len(text) > len(said):
                    yield text[len(said) :]
                    said = text
        finally:
            close = getattr(steps, "close", None)
            if close:
                close()

    def guided(self, prompt: str, decoder, *, max_tokens: int, temperature: float = 0.0,
               adapter: str | None = None) -> list[int]:
        """Decode with `decoder` (cascade.llm.constrain.Decoder) choosing every token; the ids it chose, end
        token excluded.

        CTranslate2 has no logits processor: the Generator decodes on its own (greedy, or sampling at
        `temperature`) and a step callback shows the decoder each step's logits and token. While the decoder
        keeps the Generator's token, decoding runs on with its KV cache; where it replaces one, decoding stops
        and restarts from the prompt plus the tokens decided so far (one prompt pass per departure: a model
        that follows the grammar on its own costs nothing extra).
        """
        import numpy as np

        gen = self._generator(adapter)
        start = self._prompt_tokens(prompt)
        failure: list[BaseException] = []

        def step(result: Any) -> bool:
            try:
                new = decoder(np.asarray(result.logits).reshape(-1), result.token_id)
            except BaseException as exc:  # raised again outside CTranslate2's thread
                failure.append(exc)
                return True
            return decoder.ended or new != [result.token_id] or len(decoder.choices) >= max_tokens

        while len(decoder.choices) < max_tokens and not decoder.ended:
            before = len(decoder.choices)
            head = self.tokenizer.convert_ids_to_tokens(decoder.tokens)
            gen.generate_batch([start + head], max_length=max_tokens - before, include_prompt_in_result=False,
                               end_token=self._ends, return_logits_vocab=True, callback=step,
                               **self._sampling(temperature))
            if failure:
                raise failure[0]
            if len(decoder.choices) == before:  # the Generator stopped without a step (length)
                break
        return [t for t in decoder.tokens if t not in decoder.ends]

    def chat_template(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return chat_prompt(self.tokenizer, messages, add_generation_prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
