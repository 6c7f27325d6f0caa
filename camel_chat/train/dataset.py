"""Training data: ShareGPT records → token ids and loss labels, the train/eval split, and the cache.

This module owns the step from a data file to `Encoded` samples (ids + labels). Ids and
labels come from the one renderer and encoder (`camel_chat.templates`): a conversation is
rendered into segments tagged trainable or not and each segment is tokenized on its own, so
the mask cannot drift from the ids; nothing here re-derives labels from strings.

    records = load_conversations("dataset.json")
    train, evals = split_train_eval(records)          # the seed's seeded 98/2 split
    samples, tally = tokenized_dataset("dataset.json", train, tokenizer, "vicuna_v1.1",
                                       max_length=2048, cache_dir=Path("cache"))
    print(describe_sample(samples[0], tokenizer))      # trained spans marked «...»

Records that are not conversations are dropped and counted by rule, samples longer than
`max_length` are truncated and counted, and a sample with no trainable token left is dropped
and counted ("no-trainable-tokens"), never trained on silently. Tokenization runs once with a
progress bar; its result is cached under a sha256 of (records, tokenizer, template, max
length, code), so a second run, or the other ranks of a distributed run, load it instead.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from camel_chat.conversation import Conversation, ConversationError, Message, from_sharegpt, validate
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.errors import CamelChatError, DataError
from camel_chat.json_input import iter_json_array, read_json, read_jsonl
from camel_chat.templates import IGNORE_INDEX, Encoded, SegmentEncoder, Template, get_template, render

# Bump when the cache file layout or the meaning of its contents changes.
CACHE_FORMAT = "camel_chat-tokenized-v1"


@dataclass
class TokenizeTally(Tally):
    """A `Tally` that also counts truncated samples and the tokens kept."""

    truncated: int = 0
    truncated_examples: list[str] = field(default_factory=list)
    tokens: int = 0
    trained_tokens: int = 0

    def note_truncated(self, where: str) -> None:
        self.truncated += 1
        if len(self.truncated_examples) < self.max_examples:
            self.truncated_examples.append(where)

    def summary(self) -> str:
        lines = [super().summary()]
        if self.truncated:
            where = ", ".join(self.truncated_examples)
            lines.append(f"  truncated {self.truncated:>5}  longer than max_length (e.g. {where})")
        share = 100.0 * self.trained_tokens / self.tokens if self.tokens else 0.0
        lines.append(f"  tokens {self.tokens:,}, trained on {self.trained_tokens:,} ({share:.1f} %)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "examples": self.examples,
            "truncated": self.truncated,
            "truncated_examples": self.truncated_examples,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizeTally:
        tally = cls(data["name"], kept=data["kept"])
        tally.dropped.update(data["dropped"])
        tally.examples = {k: list(v) for k, v in data["examples"].items()}
        tally.truncated, tally.truncated_examples = data["truncated"], list(data["truncated_examples"])
        tally.tokens, tally.trained_tokens = data["tokens"], data["trained_tokens"]
        return tally


# --- loading and splitting -------------------------------------------------------------------


def load_conversations(path: str | Path) -> list[dict]:
    """Read a JSON array (or a .jsonl file) of ShareGPT records; errors name the file."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [record for _, record in read_jsonl(path)]
    try:  # streamed: a merged dataset.json can be larger than one document may be
        return list(iter_json_array(path))
    except DataError as exc:
        if exc.rule != "not-an-array":
            raise
    data = read_json(path)  # only to say what the file holds instead
    raise DataError(path, f"expected a JSON array of conversations, found a JSON {type(data).__name__}")


def split_train_eval(records: list, eval_ratio: float = 0.02, seed: int = 0) -> tuple[list, list]:
    """The seed's split: a seeded permutation, the first (1 - eval_ratio) for training."""
    if not 0.0 <= eval_ratio < 1.0:
        raise CamelChatError(f"--eval_ratio must be in [0, 1), got {eval_ratio}")
    perm = np.random.RandomState(seed).permutation(len(records))
    split = int(len(perm) * (1.0 - eval_ratio))
    return [records[i] for i in perm[:split]], [records[i] for i in perm[split:]]


# --- tokenization ----------------------------------------------------------------------------


def check_template(encoder: SegmentEncoder, template: Template) -> None:
    """Raise `CamelChatError` naming --template when this tokenizer cannot encode `template`."""
    fields = [template.system, template.user.prefix, template.user.suffix, template.assistant.prefix]
    fields += [template.assistant.suffix, template.end_of_turn]
    for token, text in (("eos_token", encoder.special.eos), ("bos_token", encoder.special.bos)):
        if not text and any("{" + token + "}" in f for f in fields):
            raise CamelChatError(
                f"--template {template.name}: the template needs the tokenizer's {token}, and this "
                "tokenizer has none"
            )
    probe = Conversation((Message("user", "hello"), Message("assistant", "hi")))
    segments = render(template, probe, special=encoder.special, check=False)
    unk = encoder.tokenizer.unk_token_id
    for seg in segments:
        if seg.message is None and unk is not None and unk in encoder.fixed_ids(seg.text):
            raise CamelChatError(
                f"--template {template.name}: this tokenizer cannot encode the template text {seg.text!r} "
                "(it becomes the unknown token)"
            )


def record_conversation(record: Any) -> Conversation:
    """A training conversation from a ShareGPT record: an unanswered last user turn is dropped."""
    if not isinstance(record, Mapping):
        kind = type(record).__name__
        raise ConversationError("not-an-object", f"a record must be a JSON object, not {kind}")
    conv = from_sharegpt(record)
    if len(conv.messages) > 1 and conv.messages[-1].role == "user":
        conv = Conversation(conv.messages[:-1], conv.system, conv.id, conv.meta)
    validate(conv, ends_with="assistant")
    return conv


def _record_name(index: int, record: Any) -> str:
    rid = record.get("id") if isinstance(record, Mapping) else None
    return f"record {index}" + (f" ({rid})" if rid not in (None, "") else "")


def tokenize_conversations(
    records: Sequence[Any],
    tokenizer: Any,
    template: Template,
    max_length: int,
    tally: Tally,
    progress: bool = True,
) -> list[Encoded]:
    """Render and encode each record; drops and truncations are counted in `tally` (pass a
    `TokenizeTally` to also count truncations and tokens)."""
    from tqdm.auto import tqdm

    if max_length < 1:
        raise CamelChatError(f"--model_max_length must be positive, got {max_length}")
    encoder = SegmentEncoder(tokenizer)
    check_template(encoder, template)
    counts = tally if isinstance(tally, TokenizeTally) else None
    out: list[Encoded] = []
    bar = tqdm(records, desc="tokenizing", unit=" conv", disable=not progress, mininterval=1.0)
    for index, record in enumerate(bar):
        where = _record_name(index, record)
        try:
            conv = record_conversation(record)
        except ConversationError as exc:
            tally.drop(exc.rule, where if exc.index is None else f"{where} message {exc.index}")
            continue
        encoded = encoder.encode(render(template, conv, special=encoder.special, check=False))
        if len(encoded.input_ids) > max_length:
            encoded = Encoded(encoded.input_ids[:max_length], encoded.labels[:max_length])
            if counts is not None:
                counts.note_truncated(where)
        trained = encoded.num_trainable
        if trained == 0:
            tally.drop("no-trainable-tokens", where)
            continue
        tally.keep()
        if counts is not None:
            counts.tokens += len(encoded.input_ids)
            counts.trained_tokens += trained
        out.append(encoded)
    return out


# --- the cache -------------------------------------------------------------------------------


def _code_fingerprint() -> bytes:
    """The sources whose behaviour decides ids and labels: a change invalidates the cache."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    for name in ("conversation", "templates.encode", "templates.render", "templates.template"):
        # import_module: the package attribute `camel_chat.templates.render` is the function
        h.update(Path(importlib.import_module(f"camel_chat.{name}").__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.digest()


def tokenizer_fingerprint(tokenizer: Any) -> bytes:
    """What decides how this tokenizer encodes: its full pipeline (vocab, merges, normalizer,
    added tokens) and its special tokens."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary and class stand for it
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = {
        "map": tokenizer.special_tokens_map,
        "ids": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id],
        "legacy": getattr(tokenizer, "legacy", None),
    }
    h.update(json.dumps(specials, sort_keys=True, default=str).encode())
    return h.digest()


def cache_key(records: Sequence[Any], tokenizer: Any, template: Template, max_length: int) -> str:
    """sha256 over the records (the exact part of the data file being tokenized), the tokenizer,
    the template's name and data, max_length and the code that renders and encodes."""
    h = hashlib.sha256()
    for part in (_code_fingerprint(), tokenizer_fingerprint(tokenizer), repr(template).encode()):
        h.update(len(part).to_bytes(8, "little") + part)
    h.update(f"max_length={max_length};records={len(records)};".encode())
    for record in records:
        h.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def save_cache(path: Path, samples: Sequence[Encoded], tally: TokenizeTally, key: str) -> None:
    """Write the samples compactly (ids, a bit per label, lengths) and atomically."""
    lengths = np.fromiter((len(s.input_ids) for s in samples), dtype=np.int64, count=len(samples))
    ids = np.fromiter((t for s in samples for t in s.input_ids), dtype=np.int64, count=int(lengths.sum()))
    trained = np.fromiter(
        (label != IGNORE_INDEX for s in samples for label in s.labels), dtype=bool, count=len(ids)
    )
    id_dtype = np.uint16 if ids.size == 0 or ids.max() < 2**16 else np.int32
    meta = json.dumps({"format": CACHE_FORMAT, "key": key, "tally": tally.to_dict()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            arrays = {"ids": ids.astype(id_dtype), "trained": np.packbits(trained), "lengths": lengths}
            np.savez(handle, meta=np.array(meta), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cache(path: Path, key: str) -> tuple[list[Encoded], TokenizeTally]:
    """Read a cache file written by `save_cache`; ValueError if it is not the one for `key`."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            raise ValueError("written for other inputs")
        ids, lengths = data["ids"].astype(np.int64), data["lengths"]
        trained = np.unpackbits(data["trained"], count=len(ids)).astype(bool)
    if int(lengths.sum()) != len(ids):
        raise ValueError("lengths do not add up")
    id_list = ids.tolist()
    label_list = np.where(trained, ids, IGNORE_INDEX).tolist()
    samples, start = [], 0
    for n in lengths.tolist():
        samples.append(Encoded(id_list[start : start + n], label_list[start : start + n]))
        start += n
    return samples, TokenizeTally.from_dict(meta["tally"])


def tokenized_dataset(
    data_path: str | Path,
    records: Sequence[Any],
    tokenizer: Any,
    template_name: str,
    max_length: int,
    cache_dir: Path | None,
    *,
    progress: bool = True,
    verbose: bool = True,
) -> tuple[list[Encoded], TokenizeTally]:
    """Tokenize `records` (taken from `data_path`) once, through the cache in `cache_dir`
    (None: no cache). Prints the counts unless `verbose=False`; raises `DataError` naming the
    file when no sample is left to train on."""
    template = get_template(template_name)
    path = None
    if cache_dir is not None:
        key = cache_key(records, tokenizer, template, max_length)
        path = Path(cache_dir) / f"tokenized-{key[:24]}.npz"
        if path.is_file():
            try:
                samples, tally = load_cache(path, key)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                print(f"ignoring unreadable tokenized cache {path} ({exc})")
            else:
                print(f"loaded tokenized cache {path}")
                return _checked(data_path, samples, tally, verbose)
    tally = TokenizeTally(f"tokenize {Path(data_path).name}")
    samples = tokenize_conversations(records, tokenizer, template, max_length, tally, progress=progress)
    if path is not None:
        save_cache(path, samples, tally, key)
        print(f"wrote tokenized cache {path}")
    return _checked(data_path, samples, tally, verbose)


def _checked(
    data_path: str | Path, samples: list[Encoded], tally: TokenizeTally, verbose: bool
) -> tuple[list[Encoded], TokenizeTally]:
    if verbose:
        print(tally.summary())
    if not samples:
        raise DataError(data_path, "no conversation left to train on:\n" + tally.summary())
    return samples, tally


# --- inspection and the torch dataset --------------------------------------------------------


def describe_sample(encoded: Encoded, tokenizer: Any) -> str:
    """One sample as text with the trained spans in «»; a header gives the counts."""
    ids, flags = encoded.input_ids, [label != IGNORE_INDEX for label in encoded.labels]
    trained = encoded.num_trainable
    share = 100.0 * trained / len(ids) if ids else 0.0
    header = f"sample: {len(ids)} tokens, {trained} trained ({share:.1f} %); trained spans in «»"
    if not ids:
        return header
    bounds = [0] + [i for i in range(1, len(ids)) if flags[i] != flags[i - 1]] + [len(ids)]
    prefixes = [tokenizer.decode(ids[:b], skip_special_tokens=False) for b in bounds]
    if all(b.startswith(a) for a, b in pairwise(prefixes)):
        pieces = [b[len(a) :] for a, b in pairwise(prefixes)]
    else:  # decoding is not prefix-stable here: decode each run on its own
        pieces = [tokenizer.decode(ids[a:b], skip_special_tokens=False) for a, b in pairwise(bounds)]
    text = "".join(
        f"«{piece}»" if flags[start] else piece for start, piece in zip(bounds, pieces, strict=False)
    )
    return f"{header}\n{text}"


class SupervisedDataset(Dataset):
    """Map-style dataset over encoded samples: item = {"input_ids", "labels"} (lists)."""

    def __init__(self, samples: Sequence[Encoded]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        sample = self.samples[index]
        return {"input_ids": sample.input_ids, "labels": sample.labels}
