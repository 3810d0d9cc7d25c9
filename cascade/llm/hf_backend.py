"""In-process LLM on CPU: transformers (+peft LoRA adapters selected per call).

The base model is loaded once; adapters are attached to it with peft on first
use and switched per call (`set_adapter`, or `disable_adapter()` for the base).
A lock serialises calls: one model, many callers (services run handlers in threads).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from cascade.config import LlmOptions
from cascade.llm.base import TextScore, TokenLogprob
from cascade.types import InvalidInput, ModelNotFound

logger = logging.getLogger(__name__)

DOC_START_TOKENS = ("<|endoftext|>",)
"""Token that conditions the first token of a text scored without a prefix (SmolLM2's document separator)."""


def adapter_dir(adapter: str) -> Path:
    """Resolve a LoRA adapter directory or raise ModelNotFound saying what is missing."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise ModelNotFound(f"LoRA adapter directory not found: {adapter}", param="adapter")
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFound(f"{adapter} is not a peft adapter directory (no adapter_config.json)", param="adapter")
    return path.resolve()


def split_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut a completion at the first stop string (the stop string itself is dropped)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


PROMPTS = Path(__file__).resolve().parent.parent / "_prompts"
"""prompts/ (cascade.prompts.PROMPTS_DIR; llm sits beside prompts in the layers, so it is not imported)."""
TURN_TEMPLATES = {"<start_of_turn>": "llm/gemma3-chat"}
"""A tokenizer without a chat template (the bundled Gemma 3's GGUF has none) gets its family's, by its turn token."""


def chat_prompt(tokenizer, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Chat messages rendered with the tokenizer's own template (or its family's, see TURN_TEMPLATES)."""
    template = tokenizer.chat_template
    if not template:
        vocab = tokenizer.get_vocab()
        name = next((n for t, n in TURN_TEMPLATES.items() if t in vocab), None)
        if name is None:
            raise InvalidInput("this LLM has no chat template: use a chat (instruct) model", param="model")
        template = (PROMPTS / f"{name}.jinja").read_text(encoding="utf-8")
    return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def load_hf_llm(name_or_path: str, home: Path):
    """A fresh (uncached) (model, tokenizer) pair in eval mode; training takes its own copy from here."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover
        raise ModelNotFound("transformers is not installed: pip install transformers") from exc
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise on the CLI and in logs
    from cascade import models

    path = models.llm_dir(name_or_path, home)
    logger.info("loading LLM %s from %s", name_or_path, path)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32")
    model.eval()
    if name_or_path in models.REGISTRY:
        model.name_or_path = models.LLM_BASE_IDS[name_or_path]
    return model, tok


class TransformersBackend:
    """LlmBackend over a HF causal LM; fp32 on CPU."""

    def __init__(self, model, tokenizer, *, name: str, options: LlmOptions):
        self.base = model
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.options = options
        self._adapters: dict[tuple[str, float], str] = {}
        self._lock = threading.RLock()
        self._start_id = self._doc_start_id()

    @classmethod
    def load(cls, options: LlmOptions, home: Path) -> TransformersBackend:
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        model, tok = load_hf_llm(options.model, home)
        return cls(model, tok, name=options.model, options=options)

    def _doc_start_id(self) -> int:
        vocab = self.tokenizer.get_vocab()
        for t in DOC_START_TOKENS:
            if t in vocab:
                return vocab[t]
        for tid in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id):
            if tid is not None:
                return tid
        raise InvalidInput("tokenizer has no BOS/EOS token to condition scoring on", param="model")

    # ------------------------------------------------------------------ adapters

    def _adapter_name(self, adapter: str) -> str:
        path = adapter_dir(adapter)
        weights = next(iter(sorted(path.glob("adapter_model.*"))), None)
        key = (str(path), weights.stat().st_mtime if weights else 0.0)
        name = self._adapters.get(key)
        if name is not None:
            return name
        from peft import PeftModel

        name = f"adapter{len(self._adapters)}"
        logger.info("loading LoRA adapter %s as %s", path, name)
        try:
            if self.model is self.base:
                self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=name)
            else:
                self.model.load_adapter(str(path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise ModelNotFound(f"cannot load LoRA adapter {adapter}: {exc}".splitlines()[0], param="adapter") from exc
        self.model.eval()
        self._adapters[key] = name
        return name

    @contextlib.contextmanager
    def _using(self, adapter: str | None) -> Iterator[object]:
        """Hold the lock with the requested adapter active (None: the base model)."""
        with self._lock:
            if adapter:
                name = self._adapter_name(adapter)  # may wrap the base in a PeftModel first
                self.model.set_adapter(name)
                yield self.model
            elif self.model is not self.base:
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model

    # ------------------------------------------------------------------ scoring

    def prompt_logprobs(self, texts: Sequence[str], *, adapter: str | None = None) -> list[list[TokenLogprob]]:
        """Per-token log-probs of each text (the first conditioned on the document-start token)."""
        encs = [self.tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
        ids = [e["input_ids"] for e in encs]
        lps = self._token_logprobs(ids, adapter)
        out = []
        for enc, lp in zip(encs, lps):
            toks = self.tokenizer.convert_ids_to_tokens(enc["input_ids"])
            out.append([TokenLogprob(token=t, offset=o[0], logprob=v) for t, o, v in zip(toks, enc["offset_mapping"], lp)])
        return out

    def score(self, texts: Sequence[str], *, adapter: str | None = None, prefix: str = "") -> list[TextScore]:
        """Log-prob of each text after `prefix` (prefix and text tokenized together, as a server would)."""
        per_token = self.prompt_logprobs([prefix + t for t in texts], adapter=adapter)
        return [score_from_tokens(toks, len(prefix), len(prefix) + len(t)) for toks, t in zip(per_token, texts)]

    def next_logprobs(self, prompt: str, tokens: Sequence[str], *, static: str = "", reply: bool = False,
                      others: bool = False) -> list[float]:
        """log p(each of `tokens` comes next | prompt) from one pass (after the document-start token, as
        prompt_logprobs), and with `others` the likeliest other token's; `static` and `reply` are CTranslate2's
        hints (one model here)."""
        import torch

        ids = [self._start_id, *self.tokenizer(prompt, add_special_tokens=False)["input_ids"]]
        wanted = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        with self._using(None) as model, torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        rest = [float(logp.index_fill(0, torch.tensor(wanted), float("-inf")).max())] if others else []
        return [*(float(logp[i]) for i in wanted), *rest]

    def _token_logprobs(self, ids: list[list[int]], adapter: str | None) -> list[list[float]]:
        import torch

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[list[float]] = [[] for _ in ids]
        bs = self.options.batch_size
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._start_id
        with self._using(adapter) as model, torch.inference_mode():
            for b in range(0, len(order), bs):
                chunk = [i for i in order[b : b + bs] if ids[i]]
                if not chunk:
                    continue
                width = 1 + max(len(ids[i]) for i in chunk)
                batch = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, i in enumerate(chunk):
                    seq = [self._start_id, *ids[i]]
                    batch[r, : len(seq)] = torch.tensor(seq)
                    mask[r, : len(seq)] = 1
                logits = model(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
                logp = torch.log_softmax(logits, dim=-1).gather(-1, batch[:, 1:, None])[..., 0]
                for r, i in enumerate(chunk):
                    out[i] = logp[r, : len(ids[i])].tolist()
        return out

    # ------------------------------------------------------------------ generation

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
        """Completions of raw prompts, greedy unless temperature > 0; cut at the first stop string (`drafts` unused)."""
        if max_tokens < 1:
            raise InvalidInput("max_tokens must be >= 1", param="max_tokens")
        out: list[str] = []
        bs = self.options.batch_size
        for b in range(0, len(prompts), bs):
            out.extend(self._generate_batch(list(prompts[b : b + bs]), max_tokens, stop, temperature, adapter))
        return out

    def _generate_batch(self, prompts: list[str], max_tokens: int, stop: Sequence[str], temperature: float, adapter: str | None) -> list[str]:
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
        kwargs = {"do_sample": False} if temperature <= 0 else {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
        stops = [s for s in stop if s]
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=tok)
        with self._using(adapter) as model, torch.inference_mode():
            gen = model.generate(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                max_new_tokens=max_tokens,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
                **kwargs,
            )
        new = gen[:, enc["input_ids"].shape[1] :]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [split_at_stop(t, stops) for t in texts]

    def guided(self, prompt: str, decoder, *, max_tokens: int, temperature: float = 0.0,
               adapter: str | None = None) -> list[int]:
        """Decode with `decoder` (cascade.llm.constrain.Decoder) choosing every token from this model's logits
        (KV cache kept between steps); the ids it chose, end token excluded. `temperature` is the decoder's."""
        import torch

        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InvalidInput("empty prompt: nothing to generate from", param="prompt")
        import inspect

        name = "cache" if "cache" in inspect.signature(self.base.forward).parameters else "past_key_values"
        with self._using(adapter) as model, torch.inference_mode():
            feed, past = torch.tensor([ids]), None
            while len(decoder.choices) < max_tokens and not decoder.ended:
                out = model(input_ids=feed, use_cache=True, logits_to_keep=1, **{name: past})
                past = getattr(out, name)  # transformers 5.x renamed past_key_values to cache
                new = decoder(out.logits[0, -1].float().numpy())
                if not new or decoder.ended:
                    break
                feed = torch.tensor([new])
        return [t for t in decoder.tokens if t not in decoder.ends]

    @property
    def context_length(self) -> int | None:
        """Tokens the model attends over (prompt plus reply), from its config."""
        return getattr(self.base.config, "max_position_embeddings", None)

    def chat_template(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return chat_prompt(self.tokenizer, messages, add_generation_prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def score_from_tokens(tokens: Sequence[TokenLogprob], prefix_chars: int, total_chars: int) -> TextScore:
    """Sum the log-probs of the tokens that reach past the prefix (a straddling token counts as text)."""
    total, n = 0.0, 0
    for i, tok in enumerate(tokens):
        end = tokens[i + 1].offset if i + 1 < len(tokens) else total_chars
        if end <= prefix_chars:
            continue
        if tok.logprob is not None:
            total += tok.logprob
            n += 1
    return TextScore(logprob=total, n_tokens=n)
