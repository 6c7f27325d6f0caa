"""Every command answers --help, and the `camel-chat` front dispatches to them."""

from __future__ import annotations

import pytest

from camel_chat.__main__ import COMMANDS, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_renders_for_every_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_front_lists_commands_and_rejects_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "merge" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_light_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import camel_chat.data_preprocessing.convert_datasets_to_conversation_format\n"
        "import camel_chat.data_preprocessing.download_datasets, camel_chat.templates\n"
        "import camel_chat.data_preprocessing.merge, camel_chat.model.tiny\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
