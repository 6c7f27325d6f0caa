"""download_datasets with an injected fetch (never the network), the catalogue, and the samples."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)

from camel_chat import hub as hub_reasons
from camel_chat.data_preprocessing import download_datasets as dd
from camel_chat.data_preprocessing.sources import NAMES, SOURCES, resolve_names
from camel_chat.errors import CamelChatError

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "datasets"
BUILD_SCRIPT = REPO_ROOT / "samples" / "build_samples.py"


# --- the catalogue ------------------------------------------------------------------------------


def test_all_expands_to_nine_names_in_order() -> None:
    expected = ["ai_society", "code", "math", "physics", "chemistry", "biology"]
    expected += ["sharegpt", "alpaca", "kagent"]
    assert list(NAMES) == expected
    assert resolve_names(["all"]) == expected


def test_resolve_names_dedups_keeping_first_mention() -> None:
    assert resolve_names(["math", "Alpaca", "math"]) == ["math", "alpaca"]
    assert resolve_names(["kagent", "all"])[:2] == ["kagent", "ai_society"]
    assert len(resolve_names(["kagent", "all"])) == 9


@pytest.mark.parametrize("names", [["maths"], ["math", "sharegpt4"]])
def test_unknown_name_is_named_with_the_valid_ones(names: list[str]) -> None:
    with pytest.raises(CamelChatError) as info:
        resolve_names(names)
    message = str(info.value)
    assert repr(names[-1]) in message
    assert all(name in message for name in (*NAMES, "all"))


def test_no_names_is_an_error() -> None:
    with pytest.raises(CamelChatError, match="choose from"):
        resolve_names([])


def test_catalogue_matches_the_spec() -> None:
    for name in ("ai_society", "code", "math", "physics", "chemistry", "biology"):
        source = SOURCES[name]
        assert source.repo_id == f"camel-ai/{name}"
        assert source.gated
        assert source.folder == source.files[0].split(".")[0]
    assert SOURCES["ai_society"].files == ("ai_society_chat.tar.gz",)
    assert SOURCES["math"].files == ("math.zip",)
    assert SOURCES["sharegpt"].files == (
        "HTML_cleaned_raw_dataset/sg_90k_part1.json",
        "HTML_cleaned_raw_dataset/sg_90k_part2.json",
    )
    assert SOURCES["alpaca"].files == ("data/train-00000-of-00001-a09b74b3ef9c3b56.parquet",)
    assert SOURCES["kagent"].repo_id == "kwaikeg/KAgentInstruct"
    assert SOURCES["kagent"].files == ("kwaiagent_train_data.json",)
    assert all(s.repo_type == "dataset" for s in SOURCES.values())
    assert SOURCES["code"].url == "https://huggingface.co/datasets/camel-ai/code"


# --- a fake Hub ---------------------------------------------------------------------------------


def hub_error(cls: type[Exception], status: int, message: str) -> Exception:
    # HfHubHTTPError subclasses only read `headers` and `request` from the response.
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return cls(message, response=response)  # type: ignore[call-arg]


def network_error() -> Exception:
    """What hf_hub_download raises with no route to the Hub: a wrapped connection error."""
    try:
        raise ConnectionError("[Errno -2] Name or service not known")
    except ConnectionError as cause:
        try:
            raise LocalEntryNotFoundError("cannot find the requested files") from cause
        except LocalEntryNotFoundError as exc:
            return exc


class FakeHub:
    """Serves the bundled samples like hf_hub_download(local_dir=...); fails repos on request."""

    def __init__(self, failures: dict[str, Callable[[], Exception]] | None = None) -> None:
        self.failures = failures or {}
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *, repo_id: str, filename: str, repo_type: str, local_dir: str) -> str:
        call = {"repo_id": repo_id, "filename": filename, "repo_type": repo_type}
        self.calls.append({**call, "local_dir": local_dir})
        if repo_id in self.failures:
            raise self.failures[repo_id]()
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / filename, target)
        return str(target)

    @property
    def fetched(self) -> list[str]:
        return [c["filename"] for c in self.calls]


def quiet(_: str) -> None:
    pass


# --- run() ----------------------------------------------------------------------------------


def test_all_datasets_land_and_unpack_in_the_chosen_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    hub = FakeHub()
    report = dd.run(tmp_path / "dl", ["all"], fetch=hub, log=quiet)
    assert report.ok, report.summary()
    assert [o.name for o in report.outcomes] == list(NAMES)
    assert all(o.status == dd.DONE for o in report.outcomes)
    assert all(c["repo_type"] == "dataset" for c in hub.calls)
    assert {c["local_dir"] for c in hub.calls} == {str(tmp_path / "dl")}
    assert hub.fetched == [f for s in SOURCES.values() for f in s.files]
    dl = tmp_path / "dl"
    for name in ("ai_society_chat", "code_chat", "math", "physics", "chemistry", "biology"):
        assert list((dl / name).glob("*.json")), name  # JSON directly in the folder
    assert not list(dl.glob("*.zip")) and not list(dl.glob("*.tar.gz"))  # archives removed
    assert (dl / "HTML_cleaned_raw_dataset" / "sg_90k_part2.json").is_file()
    assert (dl / "kwaiagent_train_data.json").is_file()
    assert list(cwd.iterdir()) == []  # nothing in ./datasets (the seed's quirk)
    assert "9 done, 0 already present, 0 failed" in report.summary()


def test_files_present_are_not_fetched_again(tmp_path: Path) -> None:
    part1 = "HTML_cleaned_raw_dataset/sg_90k_part1.json"
    (tmp_path / part1).parent.mkdir(parents=True)
    shutil.copyfile(SAMPLES / part1, tmp_path / part1)
    hub = FakeHub()
    dd.run(tmp_path, ["sharegpt", "math", "kagent"], fetch=hub, log=quiet)
    assert hub.fetched == [
        "HTML_cleaned_raw_dataset/sg_90k_part2.json",
        "math.zip",
        "kwaiagent_train_data.json",
    ]
    # Second run: everything is there, including math, whose archive was unpacked and removed.
    again = FakeHub()
    report = dd.run(tmp_path, ["sharegpt", "math", "kagent"], fetch=again, log=quiet)
    assert again.calls == []
    assert [o.status for o in report.outcomes] == [dd.PRESENT] * 3


def test_archives_dropped_in_by_hand_are_unpacked_and_removed(tmp_path: Path) -> None:
    for name in ("ai_society_chat.tar.gz", "physics.zip"):
        shutil.copyfile(SAMPLES / name, tmp_path / name)
    hub = FakeHub()
    report = dd.run(tmp_path, ["ai_society"], fetch=hub, log=quiet)
    assert hub.calls == []
    assert report.get("ai_society").status == dd.DONE
    assert "extracted ai_society_chat.tar.gz" in report.get("ai_society").detail
    assert report.get("physics").status == dd.DONE  # not asked for, but its archive was there
    assert len(list((tmp_path / "ai_society_chat").glob("*.json"))) == 6
    assert len(list((tmp_path / "physics").glob("*.json"))) == 3
    assert not (tmp_path / "ai_society_chat.tar.gz").exists()
    assert not (tmp_path / "physics.zip").exists()


def test_keep_archives(tmp_path: Path) -> None:
    shutil.copyfile(SAMPLES / "math.zip", tmp_path / "math.zip")
    dd.run(tmp_path, ["math"], fetch=FakeHub(), remove_archives=False, log=quiet)
    assert (tmp_path / "math.zip").is_file()
    assert len(list((tmp_path / "math").glob("*.json"))) == 3


def test_one_failing_dataset_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_reasons, "get_token", lambda: None)
    hub = FakeHub(
        {
            "camel-ai/ai_society": lambda: hub_error(GatedRepoError, 401, "gated repo"),
            "camel-ai/code": lambda: hub_error(RepositoryNotFoundError, 404, "Not Found"),
            "camel-ai/math": lambda: hub_error(RemoteEntryNotFoundError, 404, "Entry Not Found"),
            "anon8231489123/ShareGPT_Vicuna_unfiltered": network_error,
            "tatsu-lab/alpaca": lambda: OfflineModeIsEnabled("offline"),
        }
    )
    report = dd.run(tmp_path, ["all"], fetch=hub, log=quiet)
    assert not report.ok
    reasons = {o.name: o.error.reason for o in report.failed if o.error}
    assert set(reasons) == {"ai_society", "code", "math", "sharegpt", "alpaca"}
    assert reasons["ai_society"].startswith(
        "gated: accept the terms at https://huggingface.co/datasets/camel-ai/ai_society and log "
        "in with `hf auth login` or set HF_TOKEN"
    )
    assert "no token found" in reasons["ai_society"]
    assert "camel-ai/code not found" in reasons["code"]
    assert reasons["math"] == "file math.zip not found in camel-ai/math"
    assert reasons["sharegpt"].startswith("no network access to the Hugging Face Hub")
    assert "offline mode" in reasons["alpaca"]
    for name in ("physics", "chemistry", "biology", "kagent"):  # still processed
        assert report.get(name).status == dd.DONE
    summary = report.summary()
    assert "failed   ai_society  gated: accept the terms" in summary
    assert "4 done, 0 already present, 5 failed" in summary


def test_gated_error_with_a_token_says_access_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_reasons, "get_token", lambda: "hf_xxx")
    hub = FakeHub({"camel-ai/math": lambda: hub_error(GatedRepoError, 403, "gated")})
    report = dd.run(tmp_path, ["math"], fetch=hub, log=quiet)
    assert "your token has no access yet" in report.get("math").error.reason


def test_partial_dataset_keeps_what_arrived(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(**kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TimeoutError("read timed out")
        return FakeHub()(**kwargs)

    report = dd.run(tmp_path, ["sharegpt"], fetch=flaky, log=quiet)
    assert report.get("sharegpt").status == dd.FAILED
    assert "no network access" in report.get("sharegpt").error.reason
    assert (tmp_path / "HTML_cleaned_raw_dataset" / "sg_90k_part1.json").is_file()


def test_a_bug_in_fetch_is_not_swallowed(tmp_path: Path) -> None:
    def broken(**kwargs: Any) -> str:
        raise ValueError("a bug, not a download problem")

    with pytest.raises(ValueError, match="a bug"):
        dd.run(tmp_path, ["kagent"], fetch=broken, log=quiet)


def test_corrupt_archive_fails_its_dataset_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "code_chat.tar.gz").write_bytes(b"not really gzip")
    report = dd.run(tmp_path, ["code", "kagent"], fetch=FakeHub(), log=quiet)
    code = report.get("code")
    assert code.status == dd.FAILED
    assert code.error.reason.startswith("bad archive: ")
    assert "code_chat.tar.gz" in code.error.reason
    assert "not a tar/zip archive" in code.error.reason
    assert not (tmp_path / "code_chat").exists()
    assert (tmp_path / "code_chat.tar.gz").exists()  # kept, so the user can look at it
    assert report.get("kagent").status == dd.DONE


def test_download_dir_that_is_a_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CamelChatError, match="not a folder"):
        dd.run(tmp_path / "file", ["math"], fetch=FakeHub(), log=quiet)


# --- main() ---------------------------------------------------------------------------------


def test_main_exits_1_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = FakeHub({"camel-ai/biology": lambda: hub_error(GatedRepoError, 401, "gated")})
    monkeypatch.setattr(dd, "hf_hub_download", hub)
    code = dd.main(["--download_directory", str(tmp_path), "--datasets", "math", "biology"])
    out = capsys.readouterr().out
    assert code == 1
    assert "done     math" in out
    assert "failed   biology  gated: accept the terms at" in out
    assert (tmp_path / "math" / "001_004_017.json").is_file()


def test_main_exits_0_with_the_dash_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dd, "hf_hub_download", FakeHub())
    assert dd.main(["--download-directory", str(tmp_path), "--datasets", "alpaca"]) == 0
    assert "1 done, 0 already present, 0 failed" in capsys.readouterr().out
    assert (tmp_path / SOURCES["alpaca"].files[0]).is_file()


def test_main_rejects_an_unknown_name_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = FakeHub()
    monkeypatch.setattr(dd, "hf_hub_download", hub)
    assert dd.main(["--download_directory", str(tmp_path), "--datasets", "vicuna"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'vicuna'" in err and "kagent" in err
    assert hub.calls == []


# --- the bundled samples ------------------------------------------------------------------------


def _build(out: Path) -> dict[str, bytes]:
    command = [sys.executable, str(BUILD_SCRIPT), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    return _files_under(out)


def _files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _archive_members(name: str, data: bytes) -> dict[str, bytes]:
    if name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {i.filename: archive.read(i) for i in archive.infolist()}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() if m.isfile() else b"" for m in tar.getmembers()}


def test_build_samples_is_byte_identical_and_matches_the_committed_files(tmp_path: Path) -> None:
    first = _build(tmp_path / "a")
    second = _build(tmp_path / "b")
    assert first == second  # deterministic: fixed mtimes, sorted members
    committed = _files_under(SAMPLES)
    assert sorted(committed) == sorted(first)
    for name, data in first.items():
        if name.endswith(".json"):
            assert committed[name] == data, f"{name} is stale: run samples/build_samples.py"
        elif name.endswith((".zip", ".tar.gz")):
            # Compare content, not bytes: another zlib may compress the same members differently.
            assert _archive_members(name, committed[name]) == _archive_members(name, data), name
        else:
            import pyarrow.parquet as pq

            built = pq.read_table(io.BytesIO(data))
            kept = pq.read_table(io.BytesIO(committed[name]))
            assert built.equals(kept) and built.schema.metadata == kept.schema.metadata, name


def test_samples_cover_every_catalogue_file() -> None:
    for source in SOURCES.values():
        for filename in source.files:
            assert (SAMPLES / filename).is_file(), filename


def test_sample_formats_have_the_documented_keys(tmp_path: Path) -> None:
    report = dd.run(tmp_path, ["all"], fetch=FakeHub(), log=quiet)
    assert report.ok
    folder = tmp_path / "ai_society_chat"
    chats = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    assert sum("input" in c and "id" not in c for c in chats) == 1
    assert sum("termination_reason" not in c for c in chats) == 1
    assert {c.get("termination_reason") for c in chats} >= {
        "<CAMEL_TASK_DONE>",
        "max_num_messages",
        "assistant_instruct_threshold",
    }
    message = chats[0]["message_1"]
    assert set(message) == {"role_name", "role_type", "meta_dict", "role", "content"}
    science = json.loads(next((tmp_path / "math").glob("*.json")).read_text())
    assert set(science) == {"role_1", "topic;", "sub_topic", "message_1", "message_2"}
    kagent = json.loads((tmp_path / "kwaiagent_train_data.json").read_text())
    assert {r["source"] for r in kagent} == {"kwai-agent", "meta-agent", "react", "profile"}
    assert all(
        set(r)
        == {
            "id",
            "query",
            "source",
            "functions",
            "function_names",
            "llm_prompt_response",
            "extra_infos",
        }
        for r in kagent
    )
