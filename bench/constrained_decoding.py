"""Which grammar library for constrained decoding: compile time and per-token mask time.

Measures the maintained CPU libraries that install here (llguidance, xgrammar,
outlines-core; each is skipped, saying why, when it does not import) on our tokenizers:
the tiny BPE of camel_chat/model/tiny.py and the real LLaMA SentencePiece (32k) and Qwen2
BPE (151k) tokenizers from tools/real_tokenizers.py. For each schema it times the
tokenizer preparation (once per tokenizer), the grammar compile, and the mask for every
step while a matcher is driven along a valid document's tokens (each token is checked to
be allowed: a library that rejects the document is reported, not timed). Times are ratios
of one run on one machine; absolute figures move with the load.

    python bench/constrained_decoding.py [--libraries llguidance,xgrammar,outlines-core]
        [--tokenizers tiny,llama-sp,qwen2] [--repeat 3] [--batch 8]

Only llguidance is a project requirement; install the others to compare:
    pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2 && pip install outlines-core==0.2.14
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FLAT = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
    "required": ["city", "days", "metric"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["flight", "train", "bus"]},
        "price": {"type": "number", "minimum": 0},
        "traveller": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "legs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
                "required": ["from", "to"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["kind", "price", "traveller", "legs"],
    "additionalProperties": False,
}
DOCS = {
    "flat": {"city": "Paris", "days": 3, "metric": True},
    "nested": {
        "kind": "train",
        "price": 129.5,
        "traveller": {"name": "李雷", "age": 31},
        "legs": [{"from": "Hangzhou", "to": "Shanghai"}, {"from": "Shanghai", "to": "Beijing"}],
    },
    "json_object": {"answer": "yes", "confidence": 0.9, "tags": ["a", "b"]},
}
SCHEMAS: dict[str, Any] = {"flat": FLAT, "nested": NESTED, "json_object": {"type": "object"}}
# tool_choice "required" for a hermes template: the <tool_call> wrapper around a schema-valid call.
CALL_SCHEMA = {
    "type": "object",
    "properties": {"name": {"const": "plan_trip"}, "arguments": NESTED},
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
CALL_OPEN, CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"


def documents() -> dict[str, str]:
    docs = {name: json.dumps(doc, ensure_ascii=False) for name, doc in DOCS.items()}
    call = json.dumps({"name": "plan_trip", "arguments": DOCS["nested"]}, ensure_ascii=False)
    docs["hermes_tool_call"] = CALL_OPEN + call + CALL_CLOSE
    return docs


@dataclass
class Result:
    library: str
    tokenizer: str
    schema: str
    import_s: float
    prepare_s: float
    compile_ms: float
    mask_us: list[float]
    ok: bool
    note: str = ""


class Library:
    """load() imports, prepare(tokenizer) once, then compile(schema name) → matcher driver."""

    name = ""

    def load(self) -> None:
        raise NotImplementedError

    def prepare(self, tokenizer: Any) -> None:
        raise NotImplementedError

    def compile(self, schema: str) -> Any:
        raise NotImplementedError

    def step(self, matcher: Any, token: int) -> tuple[bool, float]:
        """Compute the mask (timed), check `token` is allowed, consume it."""
        raise NotImplementedError


class LLGuidance(Library):
    name = "llguidance"

    def load(self) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.numpy

        self.llg, self.np_api = llguidance, llguidance.numpy

    def prepare(self, tokenizer: Any) -> None:
        import llguidance.hf

        self.tok = llguidance.hf.from_tokenizer(tokenizer)
        self.mask = llguidance.numpy.allocate_token_bitmask(1, self.tok.vocab_size)

    def compile(self, schema: str) -> Any:
        matcher_cls = self.llg.LLMatcher
        if schema == "hermes_tool_call":
            wrapper = f"start: {json.dumps(CALL_OPEN)} call {json.dumps(CALL_CLOSE)}\n"
            lark = wrapper + f"call: %json {json.dumps(CALL_SCHEMA)}"
            grammar = matcher_cls.grammar_from_lark(lark)
        else:
            grammar = matcher_cls.grammar_from_json_schema(SCHEMAS[schema])
        matcher = matcher_cls(self.tok, grammar)
        if matcher.is_error():
            raise RuntimeError(matcher.get_error())
        return matcher

    def step(self, matcher: Any, token: int) -> tuple[bool, float]:
        start = time.perf_counter()
        self.np_api.fill_next_token_bitmask(matcher, self.mask, 0)
        took = time.perf_counter() - start
        allowed = bool((int(self.mask[0, token // 32]) >> (token % 32)) & 1)
        return allowed and matcher.consume_token(token), took


class XGrammar(Library):
    name = "xgrammar"

    def load(self) -> None:
        import xgrammar  # imports torch

        self.xgr = xgrammar

    def prepare(self, tokenizer: Any) -> None:
        xgrammar = self.xgr
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
        self.compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)
        self.mask = xgrammar.allocate_token_bitmask(1, info.vocab_size)

    def compile(self, schema: str) -> Any:
        xgr = self.xgr
        if schema == "hermes_tool_call":
            grammar = xgr.Grammar.concat(
                xgr.Grammar.from_regex(re.escape(CALL_OPEN)),
                xgr.Grammar.from_json_schema(json.dumps(CALL_SCHEMA), any_whitespace=False),
                xgr.Grammar.from_regex(re.escape(CALL_CLOSE)),
            )
            compiled = self.compiler.compile_grammar(grammar)
        else:
            compiled = self.compiler.compile_json_schema(json.dumps(SCHEMAS[schema]), any_whitespace=False)
        return xgr.GrammarMatcher(compiled)

    def step(self, matcher: Any, token: int) -> tuple[bool, float]:
        start = time.perf_counter()
        matcher.fill_next_token_bitmask(self.mask)
        took = time.perf_counter() - start
        allowed = bool((int(self.mask[0, token // 32]) >> (token % 32)) & 1)
        return allowed and matcher.accept_token(token), took


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: printable bytes stand for themselves, the rest are
    shifted past 255 (the mapping every byte-level tokenizer uses)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def token_bytes(tokenizer: Any) -> dict[int, bytes]:
    """Each ordinary token's bytes (byte-level BPE or SentencePiece), for outlines-core."""
    byte_decoder = _byte_level_alphabet()
    special = set(tokenizer.all_special_ids)
    out: dict[int, bytes] = {}
    for token, i in tokenizer.get_vocab().items():
        if i in special:
            continue
        if m := re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", token):
            out[i] = bytes([int(m.group(1), 16)])
        elif "▁" in token or not all(c in byte_decoder for c in token):
            out[i] = token.replace("▁", " ").encode("utf-8")
        else:
            out[i] = bytes(byte_decoder[c] for c in token)
    return out


class OutlinesCore(Library):
    name = "outlines-core"

    def load(self) -> None:
        import numpy as np
        import outlines_core

        self.oc, self.np = outlines_core, np

    def prepare(self, tokenizer: Any) -> None:
        np = self.np
        by_bytes: dict[bytes, list[int]] = {}
        for i, b in token_bytes(tokenizer).items():
            by_bytes.setdefault(b, []).append(i)
        self.vocab = self.oc.Vocabulary(tokenizer.eos_token_id, by_bytes)
        self.mask = np.zeros((len(tokenizer) + 31) // 32, dtype=np.int32)

    def compile(self, schema: str) -> Any:
        build = self.oc.json_schema.build_regex_from_schema
        if schema == "hermes_tool_call":
            pattern = re.escape(CALL_OPEN) + build(json.dumps(CALL_SCHEMA)) + re.escape(CALL_CLOSE)
        else:
            pattern = build(json.dumps(SCHEMAS[schema]))
        return self.oc.Guide(self.oc.Index(pattern, self.vocab))

    def step(self, matcher: Any, token: int) -> tuple[bool, float]:
        start = time.perf_counter()
        matcher.write_mask_into(self.mask.ctypes.data, self.mask.size, self.mask.itemsize)
        took = time.perf_counter() - start
        allowed = bool((int(self.mask[token // 32]) >> (token % 32)) & 1)
        if allowed:
            matcher.advance(token)
        return allowed, took


LIBRARIES: dict[str, Callable[[], Library]] = {
    "llguidance": LLGuidance,
    "xgrammar": XGrammar,
    "outlines-core": OutlinesCore,
}


def load_tokenizer(name: str) -> Any:
    if name == "tiny":
        from camel_chat.model.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    folder = REPO / ".cache" / "real_tokenizers" / name
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: run `python tools/real_tokenizers.py` first")
    return AutoTokenizer.from_pretrained(folder)


def continuation_ids(tokenizer: Any, doc: str) -> list[int]:
    """`doc`'s tokens as they follow a prompt: a SentencePiece tokenizer would give a text on
    its own a dummy-prefix space ("▁{"), which no grammar for `doc` allows."""
    for prefix in ("\n", "x", ":"):
        before = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        full = tokenizer(prefix + doc, add_special_tokens=False)["input_ids"]
        if full[: len(before)] == before and tokenizer.decode(full[len(before) :]) == doc:
            return full[len(before) :]
    raise SystemExit(f"cannot tokenize {doc[:30]!r} as a continuation with this tokenizer")


def run_one(lib: Library, tokenizer_name: str, tokenizer: Any, schema: str, doc: str, repeat: int) -> Result:
    ids = continuation_ids(tokenizer, doc)
    compile_times, masks, ok, note = [], [], True, ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            matcher = lib.compile(schema)
        except Exception as exc:  # a library that cannot compile the schema is reported, not fatal
            return Result(
                lib.name, tokenizer_name, schema, 0.0, 0.0, [], False, f"compile failed: {exc}"[:120]
            )
        compile_times.append(time.perf_counter() - start)
        for k, token in enumerate(ids):
            allowed, took = lib.step(matcher, token)
            masks.append(took * 1e6)
            if not allowed:
                ok, note = False, f"rejected token {k} ({tokenizer.decode([token])!r})"
                break
    return Result(lib.name, tokenizer_name, schema, 0, 0, min(compile_times) * 1e3, masks, ok, note)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--tokenizers", default="tiny,llama-sp,qwen2")
    parser.add_argument("--repeat", type=int, default=3, help="compiles per schema (the fastest is kept)")
    parser.add_argument("--batch", type=int, default=8, help="rows in the batched-fill measurement")
    args = parser.parse_args(argv)
    unknown = set(args.libraries.split(",")) - set(LIBRARIES)
    if unknown:
        parser.error(f"--libraries: unknown {sorted(unknown)}; known: {', '.join(LIBRARIES)}")
    results: list[Result] = []
    for tokenizer_name in args.tokenizers.split(","):
        tokenizer = load_tokenizer(tokenizer_name)
        for lib_name in args.libraries.split(","):
            lib = LIBRARIES[lib_name]()
            start = time.perf_counter()
            try:
                lib.load()
            except ImportError as exc:
                print(f"{lib_name}: skipped ({exc})", file=sys.stderr)
                continue
            loaded = time.perf_counter()
            lib.prepare(tokenizer)
            prepared = time.perf_counter()
            for schema, doc in documents().items():
                result = run_one(lib, tokenizer_name, tokenizer, schema, doc, args.repeat)
                result.import_s, result.prepare_s = loaded - start, prepared - loaded
                results.append(result)
    print_table(results)
    if "llguidance" in args.libraries.split(","):
        for tokenizer_name in args.tokenizers.split(","):
            batch_fill(tokenizer_name, load_tokenizer(tokenizer_name), args.batch)
    return 0


def batch_fill(tokenizer_name: str, tokenizer: Any, batch: int) -> None:
    """A batched step's masks with llguidance: one parallel fill (GIL released) vs row by row."""
    import llguidance
    import llguidance.hf
    import llguidance.numpy as lln

    tok = llguidance.hf.from_tokenizer(tokenizer)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(NESTED)
    ids = continuation_ids(tokenizer, documents()["nested"])
    matchers = [llguidance.LLMatcher(tok, grammar) for _ in range(batch)]
    mask = lln.allocate_token_bitmask(batch, tok.vocab_size)
    executor = llguidance.LLExecutor()
    par, seq = [], []

    def parallel() -> None:
        lln.fill_next_token_bitmask_par(executor, [(m, i) for i, m in enumerate(matchers)], mask)

    def row_by_row() -> None:
        for i, m in enumerate(matchers):
            lln.fill_next_token_bitmask(m, mask, i)

    for k, token in enumerate(ids):
        # Alternate which fill goes first: the second one finds the state's lexer work cached.
        order = [(parallel, par), (row_by_row, seq)]
        for fill, times in order if k % 2 else order[::-1]:
            start = time.perf_counter()
            fill()
            times.append(time.perf_counter() - start)
        for m in matchers:
            m.consume_token(token)
    p_ms, s_ms = statistics.median(par) * 1e3, statistics.median(seq) * 1e3
    print(
        f"{tokenizer_name}: batch of {batch} masks (nested schema), median per step: "
        f"parallel fill {p_ms:.3f} ms, row by row {s_ms:.3f} ms (ratio {s_ms / p_ms:.2f})"
    )


def print_table(results: list[Result]) -> None:
    print("| tokenizer | library | schema | import s | tok prep s | compile ms | mask µs median | p99 | ok |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        masks = sorted(r.mask_us)
        median = statistics.median(masks) if masks else float("nan")
        p99 = masks[min(len(masks) - 1, int(len(masks) * 0.99))] if masks else float("nan")
        ok = "yes" if r.ok else f"no: {r.note}"
        print(
            f"| {r.tokenizer} | {r.library} | {r.schema} | {r.import_s:.2f} | {r.prepare_s:.3f} "
            f"| {r.compile_ms:.2f} | {median:.1f} | {p99:.1f} | {ok} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
