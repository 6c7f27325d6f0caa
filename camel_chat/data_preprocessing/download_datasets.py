"""`download_datasets`: fetch the source datasets from the Hugging Face Hub and unpack them.

    python -m camel_chat.data_preprocessing.download_datasets \\
        --download_directory datasets --datasets ai_society math sharegpt     # or: all

Names and files come from `sources.py`. Files already in the download directory are not
fetched again (nor is an archive whose extraction folder already holds files), so an
offline machine can be fed by copying the files in. Then every archive at the top of the
directory, fetched now or dropped there earlier, is unpacked into `DIR/<name>` and deleted.

Unlike the seed, a failure is not swallowed: every requested dataset is tried, a summary
says which were done, already present, or failed and why (gated repo, no token, missing
file, no network, damaged archive), and the command exits 1 if any failed.

The Hub token is found the usual way (`HF_TOKEN`, or `hf auth login`); the CAMEL
repositories are gated and need their terms accepted on the website first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download

from camel_chat.data_preprocessing.archives import (
    ARCHIVE_SUFFIXES,
    extract_archive,
    find_archives,
)
from camel_chat.data_preprocessing.sources import NAMES, SOURCES, Source, get_source, resolve_names
from camel_chat.errors import CamelChatError, DataError, DownloadError, run_command
from camel_chat.hub import failure_reason

#: Anything called like `hf_hub_download(repo_id=, filename=, repo_type=, local_dir=)`.
Fetch = Callable[..., Any]
Log = Callable[[str], None]

DONE, PRESENT, FAILED = "done", "present", "failed"


@dataclass
class Outcome:
    """What happened to one dataset (or to an archive found in the directory)."""

    name: str
    status: str  # DONE (something fetched or extracted), PRESENT (nothing to do), FAILED
    detail: str = ""
    error: DownloadError | None = None


@dataclass
class Report:
    """The outcome of every dataset, in the order they were requested."""

    download_dir: Path
    outcomes: list[Outcome] = field(default_factory=list)

    def get(self, name: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.name == name), None)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line per dataset, then a totals line."""
        width = max((len(o.name) for o in self.outcomes), default=0)
        lines = [f"download_datasets into {self.download_dir}:"]
        for o in self.outcomes:
            text = o.error.reason if o.error else o.detail
            lines.append(f"  {o.status:<7}  {o.name:<{width}}  {text}")
        counts = [sum(o.status == s for o in self.outcomes) for s in (DONE, PRESENT, FAILED)]
        lines.append("{} done, {} already present, {} failed".format(*counts))
        return "\n".join(lines)


def run(
    download_dir: str | Path,
    names: Iterable[str],
    fetch: Fetch | None = None,
    *,
    remove_archives: bool = True,
    log: Log | None = None,
) -> Report:
    """Fetch the named datasets into `download_dir`, then unpack every archive there.

    `fetch` defaults to `huggingface_hub.hf_hub_download` (looked up when called, so tests
    can replace it). Failures are recorded in the report, never raised; only a bad name
    or an unusable directory raises `CamelChatError`.
    """
    directory = _prepare_dir(Path(download_dir))
    fetch = fetch if fetch is not None else hf_hub_download
    log = log if log is not None else _log
    report = Report(directory.resolve())
    for name in resolve_names(names):
        report.outcomes.append(_download(get_source(name), directory, fetch, log))
    _extract_all(report, directory, remove_archives, log)
    return report


def _prepare_dir(directory: Path) -> Path:
    if directory.exists() and not directory.is_dir():
        raise CamelChatError(f"{directory}: exists and is not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CamelChatError(f"{directory}: cannot create the download folder ({exc})") from None
    return directory


def _download(source: Source, directory: Path, fetch: Fetch, log: Log) -> Outcome:
    """Fetch the files of one dataset that are not there yet; a failure becomes an Outcome."""
    fetched = 0
    for filename in source.files:
        if _present(source, directory, filename):
            continue
        log(f"{source.name}: fetching {filename} from {source.repo_id}")
        try:
            # local_dir writes real files at DIR/<filename> (no cache symlinks); the client
            # downloads to a temporary name first, so a file that exists is complete.
            fetch(
                repo_id=source.repo_id,
                filename=filename,
                repo_type=source.repo_type,
                local_dir=str(directory),
            )
        except Exception as exc:
            reason = failure_reason(exc, source.repo_id, url=source.url, filename=filename)
            if reason is None:  # not a download problem: a bug, keep the traceback
                raise
            error = DownloadError(source.name, reason)
            return Outcome(source.name, FAILED, reason, error)
        fetched += 1
    if fetched:
        return Outcome(source.name, DONE, f"downloaded {_files(fetched)}")
    return Outcome(source.name, PRESENT, f"already present ({_files(len(source.files))})")


def _present(source: Source, directory: Path, filename: str) -> bool:
    if (directory / filename).is_file():
        return True
    # An archive unpacked (and deleted) by an earlier run counts as present, so a re-run
    # does not fetch it again.
    if source.folder and filename.lower().endswith(ARCHIVE_SUFFIXES):
        folder = directory / source.folder
        return folder.is_dir() and any(folder.iterdir())
    return False


def _extract_all(report: Report, directory: Path, remove: bool, log: Log) -> None:
    """Unpack every archive at the top of `directory`, crediting it to its dataset."""
    owners = {f: s.name for s in SOURCES.values() for f in s.files}
    for archive in find_archives(directory):
        name = owners.get(archive.name, archive.name)
        outcome = report.get(name)
        if outcome is None:  # dropped in by hand for a dataset not asked for this time
            outcome = Outcome(name, PRESENT, "archive found in the download directory")
            report.outcomes.append(outcome)
        log(f"{name}: extracting {archive.name}")
        try:
            target = extract_archive(archive, directory, remove=remove)
        except DataError as exc:
            outcome.status = FAILED
            outcome.error = DownloadError(name, f"bad archive: {exc}")
            continue
        count = sum(1 for p in target.rglob("*") if p.is_file())
        outcome.status = DONE
        outcome.detail += f"; extracted {archive.name} into {target} ({_files(count)})"


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.data_preprocessing.download_datasets",
        description="Download the source datasets from the Hugging Face Hub and unpack them.",
    )
    parser.add_argument(
        "--download_directory",
        "--download-directory",
        dest="download_directory",
        default="datasets",
        metavar="DIR",
        help="folder to download into; created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        required=True,
        metavar="NAME",
        help=f"one or more of: {' '.join(NAMES)}, or all",
    )
    parser.add_argument(
        "--keep-archives",
        "--keep_archives",
        dest="keep_archives",
        action="store_true",
        help="keep each archive after unpacking it (the seed deletes them)",
    )
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args.download_directory, args.datasets, remove_archives=not args.keep_archives)
    print(report.summary())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 when every dataset is in place, 1 if any failed, 2 on bad input."""
    return run_command(_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
