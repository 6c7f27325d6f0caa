"""Reading and writing the JSON files of the data pipeline.

Reads fail with a `DataError` that names the file and the line; writes go to a temporary
file in the same folder and are renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from camel_chat.errors import DataError


def read_json(path: str | Path) -> Any:
    """Parse one JSON document; a missing or malformed file raises `DataError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(path, exc.strerror or str(exc)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record) for each non-blank line of a JSON-lines file."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON: {exc.msg}", record=f"line {lineno}") from None


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> None:
    """Write `obj` as JSON atomically (the seed's layout: indent 2, ASCII-escaped)."""
    _atomic_write(Path(path), lambda h: json.dump(obj, h, indent=indent, ensure_ascii=ensure_ascii))


_escape = json.encoder.encode_basestring_ascii  # the C string escaper json.dumps uses


def write_json_array(path: str | Path, items: Iterable[Any]) -> int:
    """Write a JSON array atomically, one element at a time as `items` yields them; return
    how many. Byte for byte what `write_json(path, list(items))` writes (indent 2, ASCII)."""

    count = 0

    def write(handle: Any) -> None:
        nonlocal count
        for item in items:
            chunks = [",\n  " if count else "[\n  "]
            _indented(item, 1, chunks)
            handle.write("".join(chunks))
            count += 1
        handle.write("\n]" if count else "[]")

    _atomic_write(Path(path), write)
    return count


def _indented(obj: Any, level: int, out: list[str]) -> None:
    """`json.dumps(obj, indent=2)` at nesting `level`, appended to `out` in pieces.

    Python's json module only has a C encoder for compact output; with `indent` it runs a
    pure-Python generator per value, which was the largest cost of writing merge.py's
    output after tokenization. Strings (nearly all of the bytes) go through json's own C
    escaper here; anything but str keys, dicts, lists and strings goes back to `json.dumps`.
    """
    if isinstance(obj, str):
        out.append(_escape(obj))
    elif isinstance(obj, dict) and obj and all(isinstance(key, str) for key in obj):
        inner = "\n" + "  " * (level + 1)
        sep = "{" + inner
        for key, value in obj.items():
            out.append(sep + _escape(key) + ": ")
            _indented(value, level + 1, out)
            sep = "," + inner
        out.append("\n" + "  " * level + "}")
    elif isinstance(obj, list) and obj:
        inner = "\n" + "  " * (level + 1)
        sep = "[" + inner
        for value in obj:
            out.append(sep)
            _indented(value, level + 1, out)
            sep = "," + inner
        out.append("\n" + "  " * level + "]")
    else:
        # JSON text holds no raw newline inside strings, so every newline is layout.
        out.append(json.dumps(obj, indent=2).replace("\n", "\n" + "  " * level))


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Write one JSON object per line, atomically."""

    def write(handle: Any) -> None:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    _atomic_write(Path(path), write)


class _Chunks:
    """A text buffer over a file that is refilled, and compacted, only when exhausted."""

    def __init__(self, handle: Any, chunk_size: int) -> None:
        self.handle, self.chunk_size = handle, chunk_size
        self.buf, self.pos, self.eof = "", 0, False

    def fill(self) -> None:
        more = self.handle.read(max(self.chunk_size, len(self.buf) - self.pos))
        self.eof = not more
        self.buf, self.pos = self.buf[self.pos :] + more, 0

    def peek(self) -> str:
        """The next non-blank character ("" at end of file), without consuming it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self.fill()


def iter_json_array(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array without loading the whole file.

    The raw ShareGPT parts and KAgentInstruct are 0.9–1.5 GB of JSON; parsing element by
    element keeps memory near the size of one record instead of the whole file.
    """
    path = Path(path)
    decoder = json.JSONDecoder()
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    with handle:
        chunks = _Chunks(handle, chunk_size)
        if chunks.peek() != "[":
            raise DataError(path, "expected a JSON array (the file must start with '[')")
        chunks.pos += 1
        index = 0
        while True:
            char = chunks.peek()
            if char == "]":
                return
            if not char:
                raise DataError(path, "truncated JSON array (no closing ']')", record=index)
            if index and char != ",":
                raise DataError(path, "malformed JSON array: expected ',' or ']'", record=index)
            if index:
                chunks.pos += 1
                chunks.peek()
            while True:
                try:
                    element, chunks.pos = decoder.raw_decode(chunks.buf, chunks.pos)
                    break
                except json.JSONDecodeError as exc:
                    if chunks.eof:
                        raise DataError(path, f"malformed JSON: {exc.msg}", record=index) from None
                    chunks.fill()  # the element may just be cut by the chunk boundary
            yield element
            index += 1
