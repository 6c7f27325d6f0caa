"""The web UI in a real browser (headless Chromium, see tests/chromium_page.py).

The first test runs controller, model_worker (a tiny vicuna_v1.1 checkpoint) and the gradio web
server as processes on free loopback ports, opens the page, sends a message, watches the reply
stream in, and saves a screenshot (checked non-blank) to docs/webui.png. The second serves the
UI in-process on a fake two-model backend: the sliders follow the selected model's defaults and
what the user sets is what the backend gets.

Every request the page makes to a non-loopback host is aborted and fails the test. Every
process the test starts is stopped when it ends."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium_page import (
    CURSOR,
    chromium_page,
    conversation_log,
    open_parameters,
    playwright_sync_api,
    send,
    slider_box,
)
from serving_stack import MODEL, serving_stack

from camel_chat.serve.web_chat import GenParams

pytestmark = pytest.mark.slow
sync_api = playwright_sync_api()

CONTEXT_LENGTH = 256
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "webui.png"


def _non_blank(path: Path) -> int:
    """Distinct colours in the screenshot (a blank page has one or two)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        assert rgb.size[0] > 200 and rgb.size[1] > 200
        colours = rgb.getcolors(maxcolors=1 << 20)
        return len(colours) if colours is not None else 1 << 20


def test_web_ui_streams_a_reply_in_chromium(tmp_path: Path) -> None:
    expect = sync_api.expect
    log_dir = tmp_path / "logs"
    web_args = ["--log-dir", str(log_dir)]
    with (
        serving_stack(tmp_path, context_length=CONTEXT_LENGTH, web_args=web_args) as stack,
        chromium_page(f"{stack.web}/?model={MODEL.lower()}") as page,
    ):
        expect(page.locator("#model_selector input")).to_have_value(MODEL, timeout=30_000)  # ?model=
        # The tiny checkpoint's generation_config.json recommends no sampling: 0.7 / 1.0.
        open_parameters(page)
        expect(slider_box(page, "temperature")).to_have_value("0.7", timeout=10_000)
        expect(slider_box(page, "top_p")).to_have_value("1")
        open_parameters(page)  # closed again for the screenshot

        snaps = send(page, "Tell me about camels.")
        assert snaps, "no reply appeared"
        final = snaps[-1]
        assert CURSOR not in final and "error_code" not in final, final
        growing = [s.replace(CURSOR, "").strip() for s in snaps if s.replace(CURSOR, "").strip()]
        assert len(set(growing)) >= 2, f"reply did not stream: {snaps[:5]}"
        assert any(len(a) < len(b) for a, b in itertools.pairwise(growing))

        page.locator("#upvote_btn").click()
        expect(page.locator("#notice")).to_contain_text("upvote", timeout=10_000)

        shot = tmp_path / "webui.png"
        page.screenshot(path=str(shot), full_page=True)

    assert _non_blank(shot) > 16, "the screenshot is blank"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)

    records = conversation_log(log_dir)
    kinds = [r["type"] for r in records]
    assert "chat" in kinds and "upvote" in kinds, kinds
    assert records[-1]["model"] == MODEL and records[-1]["ip"] == "127.0.0.1"
    assert records[-1]["gen_params"]["temperature"] == 0.7


class TwoModels:
    """`smol` recommends 0.2 / 0.9, `plain` nothing; a reply is the parameters it was asked with."""

    def list_models(self) -> list[str]:
        return ["smol", "plain"]

    def generation_defaults(self, model: str) -> GenParams:
        return GenParams(temperature=0.2, top_p=0.9) if model == "smol" else GenParams()

    def stream(self, model: str, messages: list[dict[str, str]], params: GenParams) -> Iterator[str]:
        yield f"{model} temperature={params.temperature} top_p={params.top_p}"


def test_sliders_follow_the_selected_model(tmp_path: Path) -> None:
    from camel_chat.serve.gradio_web_server import WebSettings, build_demo, theme

    expect = sync_api.expect
    demo = build_demo(TwoModels(), WebSettings(log_dir=str(tmp_path)))
    demo.queue().launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, theme=theme()
    )
    try:
        with chromium_page(demo.local_url) as page:
            open_parameters(page)
            temperature, top_p = slider_box(page, "temperature"), slider_box(page, "top_p")
            expect(temperature).to_have_value("0.2", timeout=10_000)  # the first model, on page load
            expect(top_p).to_have_value("0.9")
            selector = page.locator("#model_selector input")
            for model, shown in (("plain", ("0.7", "1")), ("smol", ("0.2", "0.9"))):
                selector.click()
                page.get_by_role("option", name=model).click()
                expect(temperature).to_have_value(shown[0], timeout=10_000)
                expect(top_p).to_have_value(shown[1])
            temperature.fill("0")
            temperature.press("Enter")
            assert send(page, "hi")[-1] == "smol temperature=0.0 top_p=0.9"  # what the user set
    finally:
        demo.close()
