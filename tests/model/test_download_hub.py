"""download_model --model OWNER/NAME: the real command against an unreachable Hub (offline mode,
a closed loopback port), and in-process with a fake `snapshot_download` that serves a folder
through huggingface_hub's own pattern filter, or raises huggingface_hub's own errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects

from camel_chat import hub as hub_reasons
from camel_chat.errors import CamelChatError, DownloadError
from camel_chat.model import download_model as dm
from camel_chat.model import hub_snapshot

COMMAND = [sys.executable, "-m", "camel_chat.model.download_model"]
REPO = "some-org/some-model"


def quiet(_: str) -> None:
    pass


def leftovers(folder: Path) -> list[str]:
    """Staging folders (or their `.old` twins) left beside a target."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --- the real command, the Hub unreachable --------------------------------------------------------


def _run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "HF_HOME": str(tmp_path / "hf-home")}  # never the developer's own Hub cache
    out = tmp_path / "X"
    return subprocess.run(
        [*COMMAND, "--model", REPO, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_offline_mode_exits_2_naming_it(tmp_path: Path) -> None:
    proc = _run(tmp_path, {**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"error: {REPO}: ") and "offline mode is on (HF_HUB_OFFLINE)" in errors[0]
    assert not (tmp_path / "X").exists()
    assert leftovers(tmp_path) == []


def test_closed_endpoint_exits_2_naming_no_network(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = _run(tmp_path, {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert proc.returncode == 2, proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1, proc.stderr
    assert "no network access to the Hugging Face Hub; check the connection" in errors[0]
    assert "offline mode" not in errors[0]
    assert not (tmp_path / "X").exists()
    assert leftovers(tmp_path) == []


# --- a fake snapshot_download -----------------------------------------------------------------------


class FakeHub:
    """Copies the files of `repo` that `allow_patterns` lets through (huggingface_hub's own filter),
    plus the client's bookkeeping folder, into `local_dir`; may fail after `fail_after` files."""

    def __init__(
        self, repo: Path, fail_after: int | None = None, error: Callable[[], Exception] | None = None
    ):
        self.repo, self.fail_after, self.error = repo, fail_after, error
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, *, repo_id: str, revision: str | None, local_dir: str, allow_patterns: list[str]
    ) -> str:
        self.calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        local = Path(local_dir)
        (local / ".cache" / "huggingface").mkdir(parents=True)
        files = sorted(p.relative_to(self.repo).as_posix() for p in self.repo.rglob("*") if p.is_file())
        for n, name in enumerate(filter_repo_objects(files, allow_patterns=allow_patterns)):
            if self.fail_after is not None and n == self.fail_after:
                raise (self.error or (lambda: TimeoutError("read timed out")))()
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.repo / name, local / name)
        return local_dir


def raising(error: Exception) -> Callable[..., str]:
    def snapshot(**_: Any) -> str:
        raise error

    return snapshot


def hub_error(cls: type[HfHubHTTPError], status: int, message: str) -> HfHubHTTPError:
    request = httpx2.Request("GET", f"https://huggingface.co/api/models/{REPO}/revision/main")
    return cls(message, response=httpx2.Response(status, request=request))


@pytest.fixture
def repo(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    """A Hub repo's files: a tiny LLaMA checkpoint plus what a checkpoint does not need."""
    folder = tmp_path / "repo"
    shutil.copytree(tiny_llama_dir, folder)
    for name in ("pytorch_model.bin", "model.onnx", "flax_model.msgpack", "model.Q4_0.gguf", "README.md"):
        (folder / name).write_bytes(b"not needed")
    return folder


def test_snapshot_is_swapped_into_place_and_loads(repo: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig

    hub = FakeHub(repo)
    target = tmp_path / "models" / "ckpt"
    got = dm.download(REPO, out=target, revision="v1.0", snapshot=hub, log=quiet)
    assert got == target
    assert hub.calls[0]["repo_id"] == REPO and hub.calls[0]["revision"] == "v1.0"
    names = sorted(p.name for p in target.iterdir())
    expected = sorted(p.name for p in Path(repo).iterdir() if p.suffix in (".json", ".safetensors"))
    assert names == sorted([*expected, hub_snapshot.SOURCE_FILE])  # no .bin/.onnx/.gguf, no .cache
    assert AutoConfig.from_pretrained(target).model_type == "llama"
    assert leftovers(target.parent) == []


def test_default_target_is_in_the_cache(repo: Path, tmp_path: Path) -> None:
    got = dm.download(REPO, cache_dir=tmp_path / "cache", snapshot=FakeHub(repo), log=quiet)
    assert got == tmp_path / "cache" / "hub" / "some-org--some-model"
    assert (got / "config.json").is_file()


def test_rerun_reuses_the_same_repo_and_revision_only(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    dm.download(REPO, out=target, snapshot=FakeHub(repo), log=quiet)
    again, logs = FakeHub(repo), []
    assert dm.download(REPO, out=target, snapshot=again, log=logs.append) == target
    assert again.calls == [] and logs == [f"checkpoint present: {target}"]
    with pytest.raises(CamelChatError, match=f"--out '{target}' is not empty; pass --force"):
        dm.download(REPO, out=target, revision="other", snapshot=again, log=quiet)
    assert again.calls == []
    dm.download(REPO, out=target, revision="other", force=True, snapshot=again, log=quiet)
    assert len(again.calls) == 1 and (target / "model.safetensors").is_file()


def test_non_empty_target_is_refused_without_force(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    hub = FakeHub(repo)
    with pytest.raises(CamelChatError, match=f"--out '{target}' is not empty; pass --force to replace it"):
        dm.download(REPO, out=target, snapshot=hub, log=quiet)
    assert hub.calls == [] and (target / "mine.txt").read_text() == "keep me"


def test_failure_midway_leaves_neither_target_nor_staging(repo: Path, tmp_path: Path) -> None:
    hub = FakeHub(repo, fail_after=2)
    with pytest.raises(DownloadError, match="no network access to the Hugging Face Hub"):
        dm.download(REPO, out=tmp_path / "ckpt", snapshot=hub, log=quiet)
    assert not (tmp_path / "ckpt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_failure_with_force_keeps_the_old_checkpoint(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(DownloadError):
        dm.download(REPO, out=target, force=True, snapshot=FakeHub(repo, fail_after=1), log=quiet)
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert leftovers(tmp_path) == []


def test_repo_without_safetensors_is_refused_by_name(repo: Path, tmp_path: Path) -> None:
    (repo / "model.safetensors").unlink()
    with pytest.raises(DownloadError) as info:
        dm.download(REPO, out=tmp_path / "ckpt", snapshot=FakeHub(repo), log=quiet)
    message = str(info.value)
    assert message.startswith(f"{REPO}: not a loadable checkpoint: no *.safetensors weights")
    assert "pickled *.bin/*.pt/*.pth" in message and "no config.json" not in message
    assert not (tmp_path / "ckpt").exists() and leftovers(tmp_path) == []


def test_repo_without_config_is_refused_by_name(repo: Path, tmp_path: Path) -> None:
    (repo / "config.json").unlink()
    with pytest.raises(DownloadError, match=r"not a loadable checkpoint: no config\.json; nothing was kept"):
        dm.download(REPO, out=tmp_path / "ckpt", snapshot=FakeHub(repo), log=quiet)
    assert not (tmp_path / "ckpt").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("error", "token", "revision", "expected"),
    [
        (
            lambda: hub_error(GatedRepoError, 401, "gated"),
            None,
            None,
            f"gated: accept the terms at https://huggingface.co/{REPO} and log in with `hf auth login` "
            "or set HF_TOKEN (no token found)",
        ),
        (lambda: hub_error(GatedRepoError, 403, "gated"), "hf_x", None, "your token has no access yet"),
        (
            lambda: hub_error(RepositoryNotFoundError, 404, "Repository Not Found"),
            None,
            None,
            f"repository {REPO} not found on the Hugging Face Hub; it may be gated or private",
        ),
        (
            lambda: hub_error(RevisionNotFoundError, 404, "Revision Not Found"),
            "hf_x",
            "v9",
            f"revision 'v9' not found in {REPO}",
        ),
        (lambda: hub_error(HfHubHTTPError, 401, "Unauthorized"), None, None, "HTTP 401"),
        (lambda: hub_error(HfHubHTTPError, 503, "Service Unavailable"), None, None, "HTTP 503"),
    ],
)
def test_hub_errors_are_one_named_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Callable[[], Exception],
    token: str | None,
    revision: str | None,
    expected: str,
) -> None:
    monkeypatch.setattr(hub_reasons, "get_token", lambda: token)
    with pytest.raises(DownloadError) as info:
        dm.download(REPO, out=tmp_path / "X", revision=revision, snapshot=raising(error()), log=quiet)
    assert str(info.value).startswith(f"{REPO}: ") and expected in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a staging folder


def test_a_bug_in_snapshot_is_not_swallowed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a bug"):
        dm.download(REPO, out=tmp_path / "X", snapshot=raising(ValueError("a bug")), log=quiet)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", REPO, "--gguf-only"], "--gguf-only is for catalogue models"),
        (["--revision", "v1"], "--revision is for Hub repo ids"),
        (["--model", "a/b--c"], "--model 'a/b--c' is not a Hugging Face repo id"),
        (["--model", "gpt-5"], "or give a Hugging Face repo id OWNER/NAME"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert dm.main([*argv, "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []
