"""Convert downloaded datasets into ShareGPT-style conversation files (`<name>_conv.json`).

    python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format \\
        --download_directory datasets --datasets all

Reads what `download_datasets` left in the directory (spec §1.6) and writes
`DIR/<name>_conv.json` for each dataset, atomically. Every record that is dropped is
counted by reason and the counts are printed. A dataset whose input is missing is
reported and skipped; the command then exits non-zero after converting the others.
Raw inputs are kept (the seed deleted the Alpaca and ShareGPT folders; `--remove-raw`
does that).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from camel_chat.conversation import ConversationError, from_sharegpt
from camel_chat.data_preprocessing import alpaca, camel, kagent
from camel_chat.data_preprocessing.archives import is_inside
from camel_chat.data_preprocessing.jsonfile import write_json
from camel_chat.data_preprocessing.sources import NAMES, SOURCES, resolve_names
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.errors import CamelChatError, DataError, run_command
from camel_chat.json_input import iter_json_array, read_json

CHAT = ("ai_society", "code")
SCIENCE = ("math", "physics", "chemistry", "biology")


def check_turns(record: dict[str, Any]) -> None:
    """Known roles and non-empty text in every turn (ordering is merge's business)."""
    conversation = from_sharegpt(record)
    if conversation.system is not None and not conversation.system.strip():
        raise ConversationError("empty-value", "system turn is empty", 0)
    for i, message in enumerate(conversation.messages):
        if not isinstance(message.content, str) or not message.content.strip():
            raise ConversationError("empty-value", f"turn {i} ({message.role}) is empty", i)


def _admit(
    records: Iterable[tuple[str, Callable[[], Iterable[dict[str, Any]]]]], tally: Tally
) -> Iterator[dict[str, Any]]:
    """Run each (location, producer) and keep the records that pass `check_turns`."""
    for where, produce in records:
        try:
            for record in produce():
                check_turns(record)
                tally.keep()
                yield record
        except ConversationError as exc:
            tally.drop(exc.rule, f"{where}: {exc.detail}")
        except DataError as exc:
            tally.drop(exc.rule or "malformed-json", f"{where}: {exc.reason}")


def convert_camel_folder(folder: Path, dataset: str, tally: Tally) -> list[dict[str, Any]]:
    """Every `*.json` file directly inside an extracted CAMEL archive (sorted, so runs repeat)."""
    if not folder.is_dir():
        raise DataError(folder, "folder not found; run download_datasets first")
    convert = camel.convert_chat if dataset in CHAT else camel.convert_science
    files = []
    for path in sorted(folder.glob("*.json")):
        if is_inside(path, folder):
            files.append(path)
        else:  # a symlink out of the download folder is not followed
            tally.drop("link-outside-folder", path.name)
    if not files:
        raise DataError(folder, "no *.json files inside")

    def producer(path: Path) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [convert(read_json(path), dataset, path.stem)]

    return list(_admit(((p.name, producer(p)) for p in files), tally))


def convert_alpaca(path: Path, tally: Tally) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(path, "file not found; run download_datasets first")
    rows = _read_alpaca_rows(path)

    def produce(row: dict[str, Any], i: int) -> list[dict[str, Any]]:
        return [alpaca.convert_row(_decoded(row), i)]

    return list(_admit(((f"row {i}", lambda r=row, i=i: produce(r, i)) for i, row in enumerate(rows)), tally))


def _read_alpaca_rows(path: Path) -> list[dict[str, Any]]:
    """The Alpaca columns as plain rows, text left as bytes: parquet does not check that its
    strings are UTF-8, so each cell is decoded (and a bad row dropped) in `_decoded`."""
    import pyarrow as pa  # only this source needs pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(alpaca.COLUMNS))
    except (ValueError, KeyError) as exc:
        raise DataError(path, f"missing column(s) {list(alpaca.COLUMNS)}: {exc}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid & co for a file that is not parquet
        raise DataError(path, f"not a readable parquet file: {exc}") from None
    text = (pa.types.is_string, pa.types.is_large_string)
    schema = pa.schema(
        [pa.field(f.name, pa.binary()) if any(t(f.type) for t in text) else f for f in table.schema]
    )
    try:
        return table.cast(schema).to_pylist()
    except Exception as exc:  # a damaged column chunk surfaces only when it is read
        raise DataError(path, f"not a readable parquet file: {exc}") from None


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column, value in row.items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                detail = f"column {column!r}: byte 0x{value[exc.start]:02x} at offset {exc.start} not UTF-8"
                raise ConversationError("invalid-utf8", detail) from None
        out[column] = value
    return out


def convert_kagent(path: Path, tally: Tally, sources: Sequence[str] | None) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(path, "file not found; run download_datasets first")

    def selected(index: int, record: Any) -> bool:
        source = record.get("source") if isinstance(record, dict) else None
        if sources and isinstance(source, str) and source not in sources:
            tally.drop("source-not-selected", f"record {index} ({source})")
            return False
        return True

    produced = (
        (f"record {i}", lambda r=r, i=i: kagent.convert_record(r, i))
        for i, r in enumerate(iter_json_array(path, drop=tally.drop))
        if selected(i, r)
    )
    return list(_admit(produced, tally))


def convert_sharegpt(
    folder: Path, files: Sequence[str], tallies: list[Tally], workers: int, keep_lang: str
) -> list[dict[str, Any]]:
    from camel_chat.data_preprocessing.language import filter_language
    from camel_chat.data_preprocessing.sharegpt import clean_sharegpt

    parts = [folder / Path(f).name for f in files]
    for part in parts:
        if not part.is_file():
            raise DataError(part, "file not found; run download_datasets first")
    reading = Tally("sharegpt: reading")
    raw = [record for part in parts for record in iter_json_array(part, drop=reading.drop)]
    reading.keep(len(raw))
    clean, lang = Tally("sharegpt: html cleaning"), Tally(f"sharegpt: language ({keep_lang})")
    tallies += [reading, clean, lang]
    return filter_language(clean_sharegpt(raw, clean, workers=workers), lang, keep_lang=keep_lang)


def convert_one(
    name: str, directory: Path, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[Tally]]:
    source = SOURCES[name]
    tally = Tally(name)
    tallies = [tally]
    if name in CHAT or name in SCIENCE:
        records = convert_camel_folder(directory / str(source.folder), name, tally)
    elif name == "alpaca":
        records = convert_alpaca(directory / source.files[0], tally)
    elif name == "kagent":
        records = convert_kagent(directory / source.files[0], tally, args.kagent_sources)
    else:
        tallies = []
        records = convert_sharegpt(
            directory / str(source.folder), source.files, tallies, args.workers, args.keep_lang
        )
    return records, tallies


def _remove_raw(name: str, directory: Path) -> None:
    source = SOURCES[name]
    if name in ("alpaca", "sharegpt") and source.folder:
        shutil.rmtree(directory / source.folder, ignore_errors=True)


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    directory = Path(args.download_directory)
    if not directory.is_dir():
        raise CamelChatError(f"--download_directory {directory}: no such directory")
    failed: list[str] = []
    for name in resolve_names(args.datasets):
        try:
            records, tallies = convert_one(name, directory, args)
        except DataError as exc:
            print(f"{name}: FAILED: {exc}")
            failed.append(name)
            continue
        out = directory / f"{name}_conv.json"
        write_json(out, records)
        for tally in tallies:
            print(tally.summary())
        print(f"{name}: wrote {len(records)} conversations to {out}")
        if args.remove_raw:
            _remove_raw(name, directory)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format",
        description="Convert downloaded datasets into <name>_conv.json conversation files.",
    )
    parser.add_argument(
        "--download_directory",
        "--download-directory",
        default="datasets",
        help="folder download_datasets filled (default: datasets)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        required=True,
        metavar="NAME",
        help=f"any of: {' '.join(NAMES)}, or all",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes for ShareGPT HTML cleaning (default: 1)"
    )
    parser.add_argument(
        "--keep-lang",
        default="en",
        choices=["en", "all"],
        help="ShareGPT language filter: keep only English (default) or all",
    )
    parser.add_argument(
        "--kagent-sources",
        nargs="+",
        metavar="SOURCE",
        choices=kagent.SOURCES,
        help="keep only these KAgentInstruct sources (default: all)",
    )
    parser.add_argument(
        "--remove-raw",
        action="store_true",
        help="delete the Alpaca and ShareGPT raw folders afterwards, as the seed did",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
