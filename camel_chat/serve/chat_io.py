"""Terminal rendering for `camel_chat.serve.cli`: one ChatIO class per `--style`.

    SimpleChatIO        plain `role: ` prompts, the reply printed as it grows
    RichChatIO          the reply rendered as Markdown, live (rich.live)
    ProgrammaticChatIO  FastChat's `[!OP:<role>]: ` markers; input ends at the sentinel
                        `9745805894023423` (for programs driving the CLI through pipes)

The chat loop (`cli.chat_loop`) only talks to this interface, so it is tested with a fake one.
`stream_output` takes an iterator of CUMULATIVE texts and returns the last one; a
KeyboardInterrupt raised while it runs propagates (the loop keeps what was shown).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TextIO

#: FastChat/camel_chat's end-of-input marker for `--style programmatic`.
SENTINEL = "9745805894023423"


class ChatIO:
    """What the chat loop needs from a terminal."""

    def prompt_for_input(self, role: str) -> str:
        """One user message; raises EOFError at end of input."""
        raise NotImplementedError

    def prompt_for_output(self, role: str) -> None:
        raise NotImplementedError

    def stream_output(self, texts: Iterable[str]) -> str:
        raise NotImplementedError

    def print_message(self, role: str, text: str) -> None:
        """A whole message (a loaded conversation's history)."""
        self.prompt_for_output(role)
        self.stream_output([text])

    def info(self, text: str) -> None:
        """A line from the CLI itself (command feedback, errors)."""
        raise NotImplementedError

    def interrupted(self) -> None:
        self.info("\n[reply interrupted]")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _delta(shown: str, text: str) -> str:
    """The new part of a cumulative text, without terminal control characters (a tiny or broken
    model can emit ESC or SO, which would garble the terminal)."""
    new = text[len(shown) :] if text.startswith(shown) else text
    return _CONTROL.sub("", new)


class SimpleChatIO(ChatIO):
    def __init__(self, multiline: bool = False, out: TextIO | None = None) -> None:
        self.multiline = multiline
        self.out = out or sys.stdout

    def prompt_for_input(self, role: str) -> str:
        if not self.multiline:
            return input(f"{role}: ")
        lines: list[str] = []
        prompt = f"{role} [Ctrl-D on an empty line to end]: "
        while True:
            try:
                lines.append(input(prompt))
            except EOFError:
                if not lines:
                    raise
                self.out.write("\n")
                break
            prompt = ""
        return "\n".join(lines)

    def prompt_for_output(self, role: str) -> None:
        self.out.write(f"{role}: ")
        self.out.flush()

    def stream_output(self, texts: Iterable[str]) -> str:
        shown = ""
        try:
            for text in texts:
                self.out.write(_delta(shown, text))
                self.out.flush()
                shown = text
        finally:
            self.out.write("\n")
            self.out.flush()
        return shown

    def info(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class RichChatIO(SimpleChatIO):
    def __init__(self, multiline: bool = False, out: TextIO | None = None) -> None:
        from rich.console import Console

        super().__init__(multiline, out)
        self.console = Console(file=self.out) if out is not None else Console()

    def prompt_for_output(self, role: str) -> None:
        self.console.print(f"[bold]{role}:[/bold]")

    def stream_output(self, texts: Iterable[str]) -> str:
        from rich.live import Live
        from rich.markdown import Markdown

        shown = ""
        with Live(console=self.console, refresh_per_second=8, vertical_overflow="visible") as live:
            for text in texts:
                shown = text
                live.update(Markdown(text))
        self.console.print()
        return shown

    def info(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)


class ProgrammaticChatIO(SimpleChatIO):
    """Plain streaming output like SimpleChatIO, with the original's markers and input sentinel."""

    def __init__(self, inp: TextIO | None = None, out: TextIO | None = None) -> None:
        super().__init__(multiline=False, out=out)
        self.inp = inp or sys.stdin

    def prompt_for_input(self, role: str) -> str:
        contents = ""
        while not contents.endswith(SENTINEL):
            char = self.inp.read(1)
            if not char:  # end of input
                if not contents.strip():
                    raise EOFError
                break
            contents += char
        if contents.endswith(SENTINEL):
            contents = contents[: -len(SENTINEL)]
        contents = contents.strip("\n")
        self.out.write(f"[!OP:{role}]: {contents}\n")
        self.out.flush()
        return contents

    def prompt_for_output(self, role: str) -> None:
        self.out.write(f"[!OP:{role}]: ")
        self.out.flush()


def make_chatio(style: str, multiline: bool = False) -> ChatIO:
    if style == "simple":
        return SimpleChatIO(multiline)
    if style == "rich":
        return RichChatIO(multiline)
    if style == "programmatic":
        return ProgrammaticChatIO()
    raise ValueError(f"unknown style {style!r}: choose simple, rich or programmatic")
