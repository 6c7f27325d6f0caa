"""The `Template` type and the catalogue of templates read from `templates.toml`.

A template is data: format strings for the system block and each role, the text that
ends an assistant turn, and stop strings. `get_template(name)` returns one; nothing here
renders (see `render.py`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from camel_chat.errors import CamelChatError
from camel_chat.templates.tool_format import ToolFormat, parse_tool_format

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONTENT = "{content}"
SYSTEM = "{system}"


@dataclass(frozen=True)
class SpecialTokens:
    """The tokenizer's BOS/EOS texts that fill `{bos_token}`/`{eos_token}` (LLaMA's by default)."""

    bos: str = "<s>"
    eos: str = "</s>"

    @classmethod
    def of(cls, tokenizer: Any) -> SpecialTokens:
        """Read them from a Hugging Face tokenizer ("" where it has none)."""
        return cls(bos=tokenizer.bos_token or "", eos=tokenizer.eos_token or "")

    def fill(self, text: str) -> str:
        return text.replace("{bos_token}", self.bos).replace("{eos_token}", self.eos)


@dataclass(frozen=True)
class RoleFormat:
    """A role's format split around `{content}`; the prefix's trailing spaces move to the content."""

    prefix: str
    lead: str  # spaces taken from the end of the prefix; they start the content
    suffix: str

    @classmethod
    def parse(cls, fmt: str, where: str) -> RoleFormat:
        if fmt.count(CONTENT) != 1:
            raise CamelChatError(f"{where}: must contain {CONTENT} exactly once")
        prefix, suffix = fmt.split(CONTENT)
        stripped = prefix.rstrip(" ")
        return cls(stripped, prefix[len(stripped) :], suffix)


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    bos: bool
    default_system: str
    system: str
    system_if_empty: bool
    system_position: Literal["start", "first_user"]
    user: RoleFormat
    assistant: RoleFormat
    end_of_turn: str
    stop: tuple[str, ...]
    examples: tuple[tuple[str, str], ...]
    tools: ToolFormat | None = None  # how it writes tools; None: it has no tool format

    @property
    def trained_suffix(self) -> str:
        """The part of the assistant suffix that is trained on (through end_of_turn)."""
        cut = self.assistant.suffix.find(self.end_of_turn)
        return self.assistant.suffix[: cut + len(self.end_of_turn)]

    @property
    def tail(self) -> str:
        """The rest of the assistant suffix, after end_of_turn (not trained on)."""
        return self.assistant.suffix[len(self.trained_suffix) :]

    def stop_strings(self, special: SpecialTokens) -> list[str]:
        """Strings that end generation: the end-of-turn text plus the template's extras."""
        stops = [special.fill(self.end_of_turn).strip(), *self.stop]
        return [s for i, s in enumerate(stops) if s and s not in stops[:i]]


def _build(name: str, raw: dict[str, Any]) -> Template:
    where = f"template {name!r}"
    position = raw.get("system_position", "start")
    if position not in ("start", "first_user"):
        raise CamelChatError(f"{where}: system_position must be 'start' or 'first_user'")
    if SYSTEM not in raw["system"]:
        raise CamelChatError(f"{where}: system must contain {SYSTEM}")
    assistant = RoleFormat.parse(raw["assistant"], f"{where}: assistant")
    if raw["end_of_turn"] not in assistant.suffix:
        raise CamelChatError(f"{where}: end_of_turn must appear in the assistant suffix")
    examples = tuple((str(r), str(c)) for r, c in raw.get("examples", []))
    return Template(
        name=name,
        description=raw.get("description", ""),
        bos=bool(raw["bos"]),
        default_system=raw["default_system"],
        system=raw["system"],
        system_if_empty=bool(raw["system_if_empty"]),
        system_position=position,
        user=RoleFormat.parse(raw["user"], f"{where}: user"),
        assistant=assistant,
        end_of_turn=raw["end_of_turn"],
        stop=tuple(raw.get("stop", ())),
        examples=examples,
        tools=parse_tool_format(name, raw.get("tools")),
    )


def parse_catalogue(text: str, where: str = "templates.toml") -> dict[str, Template]:
    """Templates from TOML text; any mistake is a `CamelChatError` naming the template and field."""
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CamelChatError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays recursively
        raise CamelChatError(f"{where}: not valid TOML: nested too deeply") from None
    catalogue = {}
    for name, raw in tables.items():
        if not isinstance(raw, dict):
            raise CamelChatError(f"{where}: {name!r} must be a [table] of template fields")
        try:
            catalogue[name] = _build(name, raw)
        except CamelChatError as exc:
            raise CamelChatError(f"{where}: {exc}") from None
        except KeyError as exc:
            raise CamelChatError(f"{where}: template {name!r}: missing field {exc.args[0]!r}") from None
        except (TypeError, AttributeError, ValueError) as exc:  # a field of the wrong type
            raise CamelChatError(f"{where}: template {name!r}: a field has the wrong type ({exc})") from None
    return catalogue


@cache
def _catalogue() -> dict[str, Template]:
    text = resources.files("camel_chat.templates").joinpath("templates.toml").read_text("utf-8")
    return parse_catalogue(text)


def list_templates() -> list[str]:
    """Names of the built-in templates."""
    return list(_catalogue())


def get_template(name: str) -> Template:
    """The template called `name`; an unknown name raises `CamelChatError` listing the known ones."""
    try:
        return _catalogue()[name]
    except KeyError:
        known = ", ".join(_catalogue())
        raise CamelChatError(f"unknown template {name!r}; known templates: {known}") from None
