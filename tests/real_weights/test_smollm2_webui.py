"""SmolLM2-135M-Instruct in the web UI, in headless Chromium (tests/chromium_page.py): controller,
model_worker and gradio web server as processes; the sliders start at the checkpoint's
generation_config.json (temperature 0.2, top_p 0.9), and at temperature 0 the model answers a
factual question correctly. About a minute on 2 CPU cores once the model is cached (conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import chromium_page as browser
import pytest
from serving_stack import serving_stack

pytestmark = pytest.mark.slow
sync_api = browser.playwright_sync_api()

QUESTION = "What is the capital of France?"


def test_web_ui_answers_at_temperature_zero(smollm2_dir: Path, tmp_path: Path) -> None:
    expect = sync_api.expect
    log_dir = tmp_path / "logs"
    web_args = ["--log-dir", str(log_dir)]
    with (
        serving_stack(tmp_path, checkpoint=smollm2_dir, model="smollm2", web_args=web_args) as stack,
        browser.chromium_page(f"{stack.web}/?model=smollm2") as page,
    ):
        expect(page.locator("#model_selector input")).to_have_value("smollm2", timeout=30_000)
        browser.open_parameters(page)
        temperature, top_p = browser.slider_box(page, "temperature"), browser.slider_box(page, "top_p")
        expect(temperature).to_have_value("0.2", timeout=10_000)  # the checkpoint's defaults
        expect(top_p).to_have_value("0.9")
        temperature.fill("0")
        temperature.press("Enter")
        snaps = browser.send(page, QUESTION, timeout=120)
    assert snaps and browser.CURSOR not in snaps[-1], f"the reply did not finish: {snaps[-3:]}"
    assert "Paris" in snaps[-1], snaps[-1]
    chat = [r for r in browser.conversation_log(log_dir) if r["type"] == "chat"][-1]
    assert chat["model"] == "smollm2"
    assert (chat["gen_params"]["temperature"], chat["gen_params"]["top_p"]) == (0.0, 0.9)
