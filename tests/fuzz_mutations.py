"""Hypothesis strategies that turn a real-format sample file into a damaged one, and the property
every input surface must hold (see docs/FUZZING.md).

    mutated_json(sample_bytes)   byte- and tree-level damage of a JSON / JSON-lines sample
    mutated_bytes(sample_bytes)  byte-level damage only (archives, parquet, YAML, TOML, text)
    assert_clean_outcome(...)    the property: exit 0, or a non-zero exit with a line naming the
                                 file; never an exception escaping; nothing half-written

Each mutation is one named kind, so a failing example says what broke it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

BAD_UTF8 = [b"\xff\xfe", b"\xc0\xaf", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xfe"]
LONE_SURROGATES = ["\\ud800", "\\udfff", "\\udc80", "\\ud83d"]
STRUCTURAL = frozenset(b'[]{},:"\n')
OTHER_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    False,
    "",
    "x",
    [],
    {},
    [1],
    {"a": 1},
    [None],
    {"value": 1},
]
DEEP = [150, 5_000, 100_000]


def _positions(data: bytes, wanted: frozenset[int]) -> list[int]:
    return [i for i, b in enumerate(data) if b in wanted]


def _in_string_positions(data: bytes) -> list[int]:
    """Offsets just after an opening quote of a JSON string (a cheap approximation)."""
    return [i + 1 for i, b in enumerate(data) if b == 0x22 and (i == 0 or data[i - 1] != 0x5C)]


@st.composite
def _position(draw: st.DrawFn, data: bytes, preferred: list[int] | None = None) -> int:
    if preferred and draw(st.booleans()):
        return draw(st.sampled_from(preferred))
    return draw(st.integers(0, max(0, len(data))))


@st.composite
def byte_flips(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    if not out:
        return bytes([draw(st.integers(0, 255))])
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(out) - 1))
        out[i] ^= draw(st.integers(1, 255))
    return bytes(out)


@st.composite
def truncation(draw: st.DrawFn, data: bytes) -> bytes:
    """Cut at a structural boundary (just before or after `[]{},:"` or a newline), or anywhere."""
    cuts = _positions(data, STRUCTURAL)
    at = draw(_position(data, [c + draw(st.integers(0, 1)) for c in cuts[:2000]] if cuts else None))
    return data[:at]


@st.composite
def inserted(draw: st.DrawFn, data: bytes, pieces: Iterable[bytes], in_strings: bool = True) -> bytes:
    piece = draw(st.sampled_from(list(pieces)))
    at = draw(_position(data, _in_string_positions(data) if in_strings else None))
    return data[:at] + piece + data[at:]


@st.composite
def reencoded(draw: st.DrawFn, data: bytes) -> bytes:
    """UTF-16/32 with or without a BOM, a UTF-8 BOM, or a BOM that lies about the encoding."""
    text = data.decode("utf-8", "replace")
    kind = draw(
        st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig", "lying-bom", "two-boms"])
    )
    if kind == "lying-bom":
        return b"\xff\xfe" + data
    if kind == "two-boms":
        return b"\xef\xbb\xbf\xef\xbb\xbf" + data
    return text.encode(kind)


@st.composite
def deep_nesting(draw: st.DrawFn, data: bytes) -> bytes:
    n = draw(st.sampled_from(DEEP))
    balanced = draw(st.booleans())
    piece = b"[" * n + (b"]" * n if balanced else b"")
    values = [i + 1 for i, b in enumerate(data) if b in b":[,"]
    at = draw(_position(data, values[:2000] or None))
    return (
        data[:at] + piece + (b"," if balanced and data[at : at + 1] not in (b"]", b"}") else b"") + data[at:]
    )


@st.composite
def huge_value(draw: st.DrawFn, data: bytes) -> bytes:
    piece = draw(
        st.sampled_from(
            [b"9" * 5000, b"1e999999", b"-1e-999999", b"NaN", b"Infinity", b'"' + b"x" * 2_000_000 + b'"']
        )
    )
    values = [i + 1 for i, b in enumerate(data) if b == 0x3A]  # after a ':' a value starts
    if not values:
        return piece + data
    at = draw(st.sampled_from(values[:2000]))
    end = at
    # replace the scalar that follows, or prepend to a container
    while end < len(data) and data[end : end + 1] not in (b",", b"}", b"]", b"{", b"[", b"\n"):
        end += 1
    return data[:at] + b" " + piece + data[end:]


def _nodes(tree: Any) -> list[tuple[Any, ...]]:
    """Every path (tuple of keys/indices) in a JSON tree, root first (iterative)."""
    paths: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(tree, ())]
    while stack and len(paths) < 5000:
        node, path = stack.pop()
        paths.append(path)
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node))
    return paths


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


@st.composite
def tree_mutation(draw: st.DrawFn, tree: Any) -> bytes:
    """Wrong types, missing and extra fields, duplicate keys, on a parsed copy of the sample."""
    tree = json.loads(json.dumps(tree))
    paths = _nodes(tree)
    kind = draw(st.sampled_from(["wrong-type", "missing-field", "extra-field", "duplicate-key"]))
    path = draw(st.sampled_from(paths))
    if kind == "wrong-type":
        value = draw(st.sampled_from(OTHER_VALUES))
        if not path:
            return json.dumps(value).encode()
        _get(tree, path[:-1])[path[-1]] = value
        return json.dumps(tree).encode()
    dicts = [p for p in paths if isinstance(_get(tree, p), dict) and _get(tree, p)]
    if not dicts:
        return json.dumps(tree).encode()
    node = _get(tree, draw(st.sampled_from(dicts)))
    key = draw(st.sampled_from(sorted(node)))
    if kind == "missing-field":
        del node[key]
        return json.dumps(tree).encode()
    if kind == "extra-field":
        node[draw(st.sampled_from(["unexpected", "id", "from", "value", "role", key + "_x"]))] = draw(
            st.sampled_from(OTHER_VALUES)
        )
        return json.dumps(tree).encode()
    marker = "__h17_duplicate__"
    node[marker] = draw(st.sampled_from(OTHER_VALUES))
    return json.dumps(tree).replace(json.dumps(marker), json.dumps(key), 1).encode()


def mutated_bytes(data: bytes) -> st.SearchStrategy[bytes]:
    """Byte-level damage that applies to any file."""
    return st.one_of(
        byte_flips(data),
        truncation(data),
        inserted(data, BAD_UTF8, in_strings=False),
        inserted(data, [b"\x00", b"\x00" * 100], in_strings=False),
        st.sampled_from([b"", b" \n", b"\x00", b"\xff\xfe", b"null", b"{}", b"[]", b"[", b"\xef\xbb\xbf"]),
    )


def mutated_json(data: bytes, *, jsonl: bool = False) -> st.SearchStrategy[bytes]:
    """Byte- and tree-level damage of a JSON (or, with `jsonl`, JSON-lines) sample."""
    if jsonl:
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        tree_lines = tree_mutation(lines).map(
            lambda b: (
                b"\n".join(json.dumps(r).encode() for r in json.loads(b))
                if isinstance(json.loads(b), list)
                else b
            )
        )
    else:
        tree_lines = tree_mutation(json.loads(data))
    return st.one_of(
        mutated_bytes(data),
        inserted(data, BAD_UTF8),
        inserted(data, [s.encode() for s in LONE_SURROGATES]),
        inserted(data, [b"\\u0000", b"\x00"]),
        reencoded(data),
        deep_nesting(data),
        huge_value(data),
        tree_lines,
    )


# --- the property ---------------------------------------------------------------------------


def assert_clean_outcome(rc: int, out: str, err: str, bad_file: Path, outputs: Iterable[Path] = ()) -> None:
    """Exit 0, or non-zero with an error line that names `bad_file`; outputs whole or absent."""
    text = out + err
    assert "Traceback" not in text, text
    assert rc in (0, 1, 2), f"exit {rc}"
    if rc != 0:
        lines = [line for line in text.splitlines() if "error" in line.lower() or "FAILED" in line]
        assert lines, f"exit {rc} without an error line:\n{text}"
        assert any(bad_file.name in line or bad_file.parent.name in line for line in lines), (
            f"no error line names {bad_file.name}:\n{text}"
        )
    for output in outputs:
        if output.exists():
            json.loads(output.read_text(encoding="utf-8"))  # whole, never half-written
        leftovers = [p.name for p in output.parent.glob(f".{output.name}.*.tmp")]
        assert not leftovers, leftovers
