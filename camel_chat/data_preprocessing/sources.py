"""The dataset catalogue: where each source lives on the Hugging Face Hub and what it unpacks to.

This module is data, not behaviour: `download_datasets` fetches what it lists, and the
converters find their inputs through it. Names, repositories and files follow the seed's
`download_datasets` (spec §1.5), plus `kagent` (KAgentInstruct, spec §8.1).

    from camel_chat.data_preprocessing.sources import SOURCES, resolve_names
    resolve_names(["all"])        # -> the nine names, in catalogue order
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from camel_chat.errors import CamelChatError

ALL = "all"


@dataclass(frozen=True)
class Source:
    """One dataset: its Hub repository, the files taken from it, and where its data lands.

    `files` are paths inside the repository; they keep that path under the download
    directory (so ShareGPT lands in `DIR/HTML_cleaned_raw_dataset/`). `folder` is the
    folder under the download directory that holds the data once downloaded: an archive's
    extraction folder (`DIR/math` for `math.zip`), or the subfolder the files keep; `None`
    when the files sit directly in the download directory.
    """

    name: str
    repo_id: str
    files: tuple[str, ...]
    gated: bool
    folder: str | None
    repo_type: str = "dataset"

    @property
    def url(self) -> str:
        """The repository's page, where a gated repo's terms are accepted."""
        return f"https://huggingface.co/datasets/{self.repo_id}"


def _camel(name: str, archive: str) -> Source:
    # Every CAMEL repo is gated behind an accept-the-terms form (spec §1.1); each archive
    # extracts into the folder named by its basename up to the first dot.
    return Source(name, f"camel-ai/{name}", (archive,), gated=True, folder=archive.split(".")[0])


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        _camel("ai_society", "ai_society_chat.tar.gz"),
        _camel("code", "code_chat.tar.gz"),
        _camel("math", "math.zip"),
        _camel("physics", "physics.zip"),
        _camel("chemistry", "chemistry.zip"),
        _camel("biology", "biology.zip"),
        Source(
            "sharegpt",
            "anon8231489123/ShareGPT_Vicuna_unfiltered",
            (
                "HTML_cleaned_raw_dataset/sg_90k_part1.json",
                "HTML_cleaned_raw_dataset/sg_90k_part2.json",
            ),
            gated=False,
            folder="HTML_cleaned_raw_dataset",
        ),
        Source(
            "alpaca",
            "tatsu-lab/alpaca",
            ("data/train-00000-of-00001-a09b74b3ef9c3b56.parquet",),
            gated=False,
            folder="data",
        ),
        Source(
            "kagent",
            "kwaikeg/KAgentInstruct",
            ("kwaiagent_train_data.json",),
            gated=False,
            folder=None,
        ),
    )
}

#: Every dataset name, in the order `all` expands to.
NAMES: tuple[str, ...] = tuple(SOURCES)


def get_source(name: str) -> Source:
    """The catalogue entry for one dataset name; an unknown name raises `CamelChatError`."""
    try:
        return SOURCES[name]
    except KeyError:
        raise CamelChatError(_unknown(name)) from None


def resolve_names(names: Iterable[str]) -> list[str]:
    """Expand `all`, drop repeats (first mention wins) and check every name.

    Names are matched case-insensitively. An empty list or an unknown name raises
    `CamelChatError` listing the valid names.
    """
    resolved: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name == ALL:
            expanded: Iterable[str] = NAMES
        elif name in SOURCES:
            expanded = (name,)
        else:
            raise CamelChatError(_unknown(raw))
        resolved.extend(n for n in expanded if n not in resolved)
    if not resolved:
        raise CamelChatError(f"no dataset named; choose from: {_choices()}")
    return resolved


def _choices() -> str:
    return " ".join((*NAMES, ALL))


def _unknown(name: str) -> str:
    return f"unknown dataset {name!r}; choose from: {_choices()}"
