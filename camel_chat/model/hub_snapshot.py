"""`hub_snapshot`: a Hugging Face Hub model repository becomes a checkpoint folder, whole or not at all.

    python -m camel_chat.model.download_model --model OWNER/NAME [--revision REV] [--out DIR] [--force]

`download_model` sends every `--model` that is not a catalogue name here. `huggingface_hub`'s
`snapshot_download` (with its own progress bars, token and HF_ENDPOINT handling) fetches only what
a checkpoint needs (`ALLOW_PATTERNS`): config, generation and tokenizer files and the safetensors
weights. Pickled weights (*.bin, *.pt, *.pth: loading them can run code) and other formats (*.h5,
*.msgpack, *.onnx, *.gguf) are never fetched; a repo without safetensors is refused by name.

The snapshot goes into a staging folder beside the target (default CACHE/hub/OWNER--NAME), is
checked to be a loadable checkpoint (config.json and *.safetensors present, else the missing one
is named) and only then swapped into place (`checkpoint.staged`); any failure deletes the staging
folder, so the target is never half-written. A non-empty target is refused unless --force, except
one this command downloaded from the same repo and revision: it is reused without the network.
A Hub failure is one line from `camel_chat.hub.failure_reason` (gated, no token, repository or
revision not found, offline mode, no network, HTTP status) and exit 2.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError, DataError, DownloadError
from camel_chat.hub import failure_reason
from camel_chat.model import checkpoint

#: What a checkpoint needs; fnmatch patterns as `snapshot_download(allow_patterns=)` takes them.
ALLOW_PATTERNS = (
    "*.json",  # config, generation_config, tokenizer*, special_tokens_map, the safetensors index
    "*.safetensors",
    "*.model",  # SentencePiece: tokenizer.model, spiece.model
    "*.tiktoken",
    "vocab.txt",
    "merges.txt",
    "*.jinja",  # chat_template.jinja
    "additional_chat_templates/*",
)
#: Written beside the weights: which repo and revision the folder came from, so a re-run reuses it.
SOURCE_FILE = ".camel_chat_hub.json"
#: Where `snapshot_download(local_dir=)` keeps its own bookkeeping; not part of the checkpoint.
CLIENT_CACHE = ".cache"

Log = Callable[[str], None]
#: Called like `huggingface_hub.snapshot_download(repo_id=, revision=, local_dir=, allow_patterns=)`.
Snapshot = Callable[..., Any]


def is_repo_id(name: str) -> bool:
    """Whether `--model NAME` means a Hub repository (OWNER/NAME) rather than a catalogue name."""
    return "/" in name


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise CamelChatError(f"--model {repo_id!r} is not a Hugging Face repo id OWNER/NAME: {exc}") from None


def default_target(cache: Path, repo_id: str) -> Path:
    """CACHE/hub/OWNER--NAME (the Hub's own cache spells repos the same way)."""
    return cache / "hub" / repo_id.replace("/", "--")


def repo_url(repo_id: str) -> str:
    """The model's page, where a gated repo's terms are accepted."""
    return f"https://huggingface.co/{repo_id}"


def download_snapshot(
    repo_id: str,
    out: Path,
    *,
    revision: str | None = None,
    force: bool = False,
    snapshot: Snapshot | None = None,
    log: Log = print,
) -> Path:
    """Download `repo_id` at `revision` into `out` as a checked checkpoint; returns `out`.

    `snapshot` defaults to `huggingface_hub.snapshot_download` (tests pass a fake).
    """
    from camel_chat.model.import_gguf import check_target

    check_repo_id(repo_id)
    target = Path(out).expanduser()
    source = {"repo_id": repo_id, "revision": revision or "main"}
    if not force and _recorded_source(target) == source:
        log(f"checkpoint present: {target}")
        return target
    check_target(target, force)
    if snapshot is None:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download
    log(f"{repo_id}@{source['revision']}: downloading from the Hugging Face Hub ...")
    with checkpoint.staged(target) as staging:
        try:
            snapshot(
                repo_id=repo_id,
                revision=revision,
                local_dir=str(staging),
                allow_patterns=list(ALLOW_PATTERNS),
            )
        except Exception as exc:
            reason = failure_reason(exc, repo_id, url=repo_url(repo_id), revision=revision)
            if reason is None:  # not a download problem: a bug, keep the traceback
                raise
            raise DownloadError(repo_id, reason) from exc
        shutil.rmtree(staging / CLIENT_CACHE, ignore_errors=True)
        check_checkpoint(staging, repo_id)
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    log(f"downloaded {repo_id}@{source['revision']} → {target}")
    return target


def check_checkpoint(folder: Path, repo_id: str) -> None:
    """Raise `DownloadError` naming what `folder` lacks to be loaded as a checkpoint."""
    missing = []
    config = folder / "config.json"
    if not config.is_file():
        missing.append("no config.json")
    if not any(folder.rglob("*.safetensors")):
        missing.append(
            "no *.safetensors weights (camel_chat reads only safetensors: pickled *.bin/*.pt/*.pth "
            "weights can run code when loaded, and are not downloaded)"
        )
    if missing:
        raise DownloadError(repo_id, f"not a loadable checkpoint: {'; '.join(missing)}; nothing was kept")
    from camel_chat.json_input import read_json

    try:
        data = read_json(config)
    except DataError as exc:  # its path is the staging folder, about to be deleted: name the file
        raise DownloadError(repo_id, f"not a loadable checkpoint: config.json: {exc.reason}") from None
    if not isinstance(data, dict):
        raise DownloadError(repo_id, "not a loadable checkpoint: config.json is not a JSON object")


def _recorded_source(target: Path) -> dict[str, Any] | None:
    """The repo and revision an earlier run downloaded into `target`, if it was this command."""
    file = target / SOURCE_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (target / "config.json").is_file():
        return None
    return data if isinstance(data, dict) else None
