"""Reading the JSON, JSON-lines and text files a user gives camel_chat: the one path every reader takes.

    read_text(path)                    a whole text file, its encoding detected
    read_json(path)                    one JSON document
    read_jsonl(path, drop=tally.drop)  (line number, record) per line of a JSON-lines file
    iter_json_array(path, drop=...)    the elements of a top-level JSON array, streamed

What every reader guarantees (no traceback, whatever the bytes):

- Encoding: UTF-8, UTF-8 with a BOM, and UTF-16/UTF-32 (with a BOM, or recognisable from
  the NUL pattern, the rule of RFC 4627 that `json.detect_encoding` implements) are decoded.
  Anything else is a `DataError` with rule ``invalid-utf8`` naming the byte and its offset.
- Text must be Unicode: a lone surrogate (``"\\ud800"`` unpaired) is rejected with rule
  ``lone-surrogate`` (tokenizers and UTF-8 writers cannot take it).
- Nesting is bounded (`MAX_DEPTH`) and checked by a scan *before* the recursive stdlib
  parser runs, so ``[[[[...`` is rule ``too-deep``, never a `RecursionError`.
- Records are bounded (`MAX_RECORD_BYTES`): a single huge element or line is rule
  ``record-too-large``, not the machine's memory. Whole documents are bounded the same way.
- ``NaN``/``Infinity`` are not JSON and integers over 4300 digits are refused: ``malformed-json``.
- Duplicate keys keep the last value, as the stdlib (and every JSON parser we know) does.

Undecodable bytes are never replaced: in a file of independent records (JSON array, JSON
lines) the record holding them is dropped and counted by the caller's `drop(rule, where)`
(so a stray byte in a 1.5 GB ShareGPT part costs one conversation, not the run); without a
`drop` callback, or in a single document (a config, one CAMEL chat), it is a `DataError`.
Replacing bytes with U+FFFD would train the model on text nobody wrote. Broken file
structure (not an array, truncated, a missing comma) is always a `DataError`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from camel_chat.errors import DataError
from camel_chat.json_scan import depth_of, json_path_of_surrogate, scan

MAX_DEPTH = 100  # real records nest 4–8 levels; the stdlib recursion limit is ~1000
MAX_RECORD_BYTES = 256 << 20  # one conversation, one line, or a whole single document

Drop = Callable[[str, str], None]

# Bytes that were not UTF-8, as surrogateescape decodes them.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _encoding(head: bytes) -> str:
    """The encoding of a file starting with `head` (its first four bytes)."""
    if not head:
        return "utf-8"
    return json.detect_encoding(head)


def _open_bytes(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise DataError(path, "file not found", rule="not-found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, not a file", rule="not-a-file") from None
    except OSError as exc:
        raise DataError(path, exc.strerror or str(exc), rule="unreadable") from None


def _decode_error(path: Path, exc: UnicodeDecodeError, base: int = 0, record: Any = None) -> DataError:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return DataError(
        path,
        f"not valid {exc.encoding.upper()} text: byte 0x{byte} at offset {base + exc.start} ({exc.reason})",
        record=record,
        rule="invalid-utf8",
    )


def read_text(path: str | Path, *, limit: int | None = None) -> str:
    """A whole text file decoded (UTF-8, BOMs, UTF-16/32); `DataError` naming the offending byte.

    Files over `limit` bytes (default `MAX_RECORD_BYTES`) are refused before being read whole.
    """
    path = Path(path)
    limit = MAX_RECORD_BYTES if limit is None else limit
    with _open_bytes(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise DataError(path, f"larger than {limit >> 20} MiB", rule="record-too-large")
    encoding = _encoding(data[:4])
    try:
        return codecs.decode(data, encoding)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from None


def _parse(text: str, pos: int, end: int) -> Any:
    """Parse `text[pos:end]` (depth already checked); ValueError says why it is not JSON."""
    value, stop = _DECODER.raw_decode(text, pos)
    if stop != end:
        raise ValueError("unexpected characters after the value")
    return value


def _check_value(raw: str, value: Any) -> tuple[str, str] | None:
    """(rule, reason) if the parsed `value` (from `raw`) holds text that is not Unicode."""
    bad = _ESCAPED_BYTE.search(raw)
    if bad:
        byte = bad.group().encode("utf-8", "surrogateescape").hex()
        return "invalid-utf8", f"byte 0x{byte} is not UTF-8"
    if _SURROGATE_ESCAPE.search(raw):  # usually an escaped emoji pair; look closer
        where = json_path_of_surrogate(value)
        if where is not None:
            return "lone-surrogate", f"lone surrogate in the string at {where}"
    return None


def read_json(path: str | Path, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document; any problem is a `DataError` naming the file, place and rule."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(path, "empty file, expected JSON", rule="malformed-json")
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # the C parser's own guard; depth_of below bounds what it accepts
        raise DataError(path, f"nesting deeper than {max_depth} levels", rule="too-deep") from None
    except json.JSONDecodeError as exc:
        reason = f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise DataError(path, reason, rule="malformed-json") from None
    except ValueError as exc:  # NaN, or an integer too long to convert
        raise DataError(path, f"malformed JSON: {exc}", rule="malformed-json") from None
    if depth_of(text, 0, len(text), max_depth) > max_depth:
        raise DataError(path, f"nesting deeper than {max_depth} levels", rule="too-deep")
    where = json_path_of_surrogate(value)
    if where is not None:
        raise DataError(path, f"lone surrogate in the string at {where}", rule="lone-surrogate")
    return value


def _fail_or_drop(drop: Drop | None, error: DataError) -> None:
    if drop is None:
        raise error
    name = Path(error.path).name
    where = name if error.record is None else f"{name} [record {error.record}]"
    drop(error.rule or "malformed-json", f"{where}: {error.reason}")


def read_jsonl(
    path: str | Path, *, drop: Drop | None = None, max_depth: int = MAX_DEPTH
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record) for each non-blank line of a JSON-lines file.

    A bad line (not UTF-8, not JSON, too deep, too long) is passed to `drop(rule, where)` and
    skipped; without `drop` it raises `DataError` naming the line. Lines are read as bytes
    with a length cap, so one enormous line never sits in memory whole.
    """
    path = Path(path)
    with _open_bytes(path) as handle:
        encoding = _encoding(handle.read(4))
        handle.seek(0)
        if encoding not in ("utf-8", "utf-8-sig"):
            # UTF-16/32 lines cannot be split on b"\n"; such files are small in practice.
            lines: Any = iter(read_text(path).encode("utf-8").splitlines(keepends=True))
        else:
            lines = iter(lambda: handle.readline(MAX_RECORD_BYTES + 1), b"")
        offset = 0
        for lineno, line in enumerate(lines, start=1):
            if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                line, offset = line[3:], 3
            base, offset = offset, offset + len(line)
            if len(line) > MAX_RECORD_BYTES:
                _fail_or_drop(drop, _too_large(path, f"line {lineno}"))
                while line and not line.endswith(b"\n"):  # skip the rest of the line
                    line = handle.readline(MAX_RECORD_BYTES)
                    offset += len(line)
                continue
            record = _jsonl_record(path, line, lineno, base, max_depth)
            if isinstance(record, DataError):
                _fail_or_drop(drop, record)
            elif record is not _BLANK:
                yield lineno, record


_BLANK = object()


def _too_large(path: Path, record: Any) -> DataError:
    reason = f"larger than {MAX_RECORD_BYTES >> 20} MiB"
    return DataError(path, reason, record=record, rule="record-too-large")


def _jsonl_record(path: Path, line: bytes, lineno: int, base: int, max_depth: int) -> Any:
    """The record on one line, `_BLANK`, or the `DataError` describing what is wrong with it."""
    where = f"line {lineno}"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _decode_error(path, exc, base, record=where)
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return _BLANK
    too_deep = DataError(path, f"nesting deeper than {max_depth} levels", record=where, rule="too-deep")
    try:
        value = _parse(text, start, len(text.rstrip()))
    except RecursionError:  # the C parser's own guard; depth_of below bounds what it accepts
        return too_deep
    except ValueError as exc:
        return DataError(path, f"malformed JSON: {_reason(exc)}", record=where, rule="malformed-json")
    if depth_of(text, start, len(text), max_depth) > max_depth:
        return too_deep
    problem = _check_value(text, value) if "\\u" in text else None
    if problem:
        return DataError(path, problem[1], record=where, rule=problem[0])
    return value


def _reason(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


class _Chunks:
    """Decoded text over a file, refilled (and compacted) only when the parser needs more."""

    def __init__(self, path: Path, handle: Any, encoding: str, chunk_size: int) -> None:
        self.path, self.handle, self.chunk_size = path, handle, chunk_size
        self.utf8 = encoding.startswith("utf-8")  # the BOM, if any, is skipped by the reader
        self.decoder = None if self.utf8 else codecs.getincrementaldecoder(encoding)("strict")
        self.pending = b""  # a UTF-8 sequence cut by the chunk boundary
        self.buf, self.pos, self.eof = "", 0, False
        # Whether the buffer may hold an undecodable byte (escaped) or a surrogate escape:
        # decided once per refill, so clean records skip the per-record checks.
        self.escaped = self.suspect = False

    def _decode(self, raw: bytes, record: int) -> str:
        if self.decoder is not None:
            try:
                return self.decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                raise _decode_error(self.path, exc, record=record) from None
        data, final = self.pending + raw, not raw
        try:
            text, used = codecs.utf_8_decode(data, "strict", final)
            escaped = False
        except UnicodeDecodeError:  # rare: decode again, keeping bad bytes as U+DC80..U+DCFF
            text, used = codecs.utf_8_decode(data, "surrogateescape", final)
            escaped = True
        self.pending = data[used:]
        self.escaped = escaped or (self.escaped and bool(_ESCAPED_BYTE.search(self.buf, self.pos)))
        return text

    def fill(self, record: int) -> None:
        if len(self.buf) - self.pos > MAX_RECORD_BYTES:
            raise _too_large(self.path, record)
        raw = self.handle.read(max(self.chunk_size, len(self.buf) - self.pos))
        more = self._decode(raw, record)
        self.eof = not raw
        self.buf, self.pos = self.buf[self.pos :] + more, 0
        self.suspect = self.escaped or "\\ud" in self.buf or "\\uD" in self.buf

    def peek(self, record: int) -> str:
        """The next non-blank character ("" at end of file), without consuming it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self.fill(record)

    def element_end(self, record: int, max_depth: int) -> tuple[int, int]:
        """(end, depth) of the element at `pos` by the iterative scan, reading more until it is whole."""
        while True:
            end, depth = scan(self.buf, self.pos)
            if end is not None:
                return end, depth
            if self.eof:
                if depth > max_depth:
                    raise DataError(self.path, f"nesting deeper than {max_depth} levels", record, "too-deep")
                raise DataError(self.path, "truncated JSON array (no closing ']')", record, "truncated")
            self.fill(record)


def iter_json_array(
    path: str | Path, *, drop: Drop | None = None, max_depth: int = MAX_DEPTH, chunk_size: int = 1 << 20
) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array without loading the whole file.

    The raw ShareGPT parts and KAgentInstruct are 0.9–1.5 GB of JSON; parsing element by
    element keeps memory near the size of one record. An element that is bad on its own
    (not UTF-8, a lone surrogate, too deep, not JSON inside its brackets) goes to
    `drop(rule, where)`; without `drop`, and for a broken array, it is a `DataError`.
    """
    path = Path(path)
    with _open_bytes(path) as handle:
        encoding = _encoding(handle.read(4))
        handle.seek(0)
        chunks = _Chunks(path, handle, encoding, chunk_size)
        first = chunks.peek(0)
        if first == "\ufeff":  # a BOM the detected codec did not consume
            chunks.pos += 1
            first = chunks.peek(0)
        if first != "[":
            raise DataError(path, "expected a JSON array (the file must start with '[')", rule="not-an-array")
        chunks.pos += 1
        index = 0
        while True:
            char = chunks.peek(index)
            if char == "]":
                return
            if not char:
                raise DataError(path, "truncated JSON array (no closing ']')", index, "truncated")
            if index and char != ",":
                raise DataError(path, "malformed JSON array: expected ',' or ']'", index, "malformed-json")
            if index:
                chunks.pos += 1
                if chunks.peek(index) in ("", "]"):
                    reason = "malformed JSON array: value expected after ','"
                    raise DataError(path, reason, index, "malformed-json")
            element = _next_element(chunks, path, index, max_depth)
            if isinstance(element, DataError):
                _fail_or_drop(drop, element)
            else:
                yield element
            index += 1


def _next_element(chunks: _Chunks, path: Path, index: int, max_depth: int) -> Any:
    """Parse the element at the cursor and move past it; a `DataError` if it is bad on its own.

    The C parser runs first (the fast path: clean records cost one `raw_decode`); its own
    recursion guard stops it on pathological nesting, and the depth of what it accepted is
    then measured without recursion (`depth_of`) before the value is let through.
    """
    while True:
        begin = chunks.pos
        try:
            value, stop = _DECODER.raw_decode(chunks.buf, begin)
        except RecursionError:
            end, _depth = chunks.element_end(index, max_depth)
            chunks.pos = end
            return DataError(path, f"nesting deeper than {max_depth} levels", index, "too-deep")
        except ValueError as exc:
            before = chunks.buf
            end, depth = chunks.element_end(index, max_depth)
            if chunks.buf is not before:
                continue  # the element was only cut by the end of the buffer: parse it whole now
            chunks.pos = end
            if depth > max_depth:
                return DataError(path, f"nesting deeper than {max_depth} levels", index, "too-deep")
            if _ESCAPED_BYTE.search(chunks.buf, begin, end):  # a stray byte broke the syntax: say so
                return DataError(path, "a byte that is not UTF-8 breaks the JSON", index, "invalid-utf8")
            return DataError(path, f"malformed JSON: {_reason(exc)}", index, "malformed-json")
        if stop == len(chunks.buf) and not chunks.eof:
            chunks.fill(index)  # a number may continue in the next chunk
            continue
        chunks.pos = stop
        if depth_of(chunks.buf, begin, stop, max_depth) > max_depth:
            return DataError(path, f"nesting deeper than {max_depth} levels", index, "too-deep")
        if chunks.suspect:
            problem = _check_value(chunks.buf[begin:stop], value)
            if problem:
                return DataError(path, problem[1], index, problem[0])
        return value
