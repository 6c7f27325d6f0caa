"""Why a Hugging Face Hub call failed, in one line a user can act on.

    reason = failure_reason(exc, "camel-ai/math", url=..., filename="math.zip")
    if reason is None:
        raise  # not a download problem: a bug, keep the traceback

`download_datasets` (one file at a time) and `download_model` (a whole model snapshot) both
turn the exceptions of `huggingface_hub` into these lines: gated repo (with or without a
token), repository or revision not found, offline mode (HF_HUB_OFFLINE), no network, file not
found, HTTP 401 or another status, a file that could not be written. Light: no torch.
"""

from __future__ import annotations

import functools
import importlib
import socket

from huggingface_hub import get_token
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

LOGIN = "log in with `hf auth login` or set HF_TOKEN"


def failure_reason(
    exc: BaseException,
    repo_id: str,
    *,
    url: str,
    filename: str | None = None,
    revision: str | None = None,
) -> str | None:
    """Say why fetching from `repo_id` (`filename` of it, or the whole repo when None) failed,
    or None when `exc` is not a download problem. `url` is the repo's page, where a gated
    repo's terms are accepted."""
    if isinstance(exc, GatedRepoError):  # before RepositoryNotFoundError: it subclasses it
        token = "no token found" if get_token() is None else "your token has no access yet"
        return f"gated: accept the terms at {url} and {LOGIN} ({token})"
    if isinstance(exc, RepositoryNotFoundError):
        hint = f"; it may be gated or private: {LOGIN}" if get_token() is None else ""
        return f"repository {repo_id} not found on the Hugging Face Hub{hint}"
    if isinstance(exc, RevisionNotFoundError):
        named = f"revision {revision!r}" if revision else "revision"
        return f"{named} not found in {repo_id}"
    chain = _causes(exc)
    if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return "no network access to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE)"
    if isinstance(exc, LocalEntryNotFoundError) or any(_is_network_error(e) for e in chain):
        if filename:
            remedy = f"copy {filename} into the download directory"
        else:
            remedy = "download it on another machine and copy the folder over"
        return f"no network access to the Hugging Face Hub; check the connection or proxy, or {remedy}"
    if isinstance(exc, EntryNotFoundError):
        return f"file {filename or '(unknown)'} not found in {repo_id}"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "error"
        if status == 401:
            return f"the Hub refused the request (HTTP 401): {LOGIN}"
        return f"the Hub answered HTTP {status}: {str(exc).splitlines()[0]}"
    if isinstance(exc, OSError):
        return f"could not write {filename or 'the download'}: {exc}"
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first (cycle-safe)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@functools.cache
def _network_error_types() -> tuple[type[BaseException], ...]:
    # The Hub client of the day may use httpx2, httpx or requests; accept whichever exist.
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror]
    for module_name, attrs in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        types.extend(getattr(module, a) for a in attrs if hasattr(module, a))
    return tuple(types)


def _is_network_error(exc: BaseException) -> bool:
    return isinstance(exc, _network_error_types())
