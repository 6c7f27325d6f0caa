"""The web UI in a real browser: controller, model_worker (a tiny vicuna_v1.1 checkpoint) and the
gradio web server run as processes on free loopback ports; headless Debian Chromium, driven by
Playwright with its executable path set (no browser downloads), opens the page, sends a message,
watches the reply stream in, and saves a screenshot (checked non-blank) to docs/webui.png.

Every request the page makes to a non-loopback host is recorded and aborted; the test asserts
there were none. Every process the test starts is stopped in a `finally`."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from serving_stack import MODEL, free_port, healthy, registered, stop, wait_until, write_checkpoint

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CONTEXT_LENGTH = 256
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "webui.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing (pip install playwright)")


def _non_blank(path: Path) -> int:
    """Distinct colours in the screenshot (a blank page has one or two)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        assert rgb.size[0] > 200 and rgb.size[1] > 200
        colours = rgb.getcolors(maxcolors=1 << 20)
        return len(colours) if colours is not None else 1 << 20


# Records the last bot message's text at every DOM change, so streaming is observed even when
# it is faster than any polling.
WATCH_JS = """
() => {
  window.__snaps = [];
  const read = () => {
    const bots = document.querySelectorAll('#chatbot [data-testid="bot"], #chatbot .message.bot');
    if (!bots.length) return;
    const text = bots[bots.length - 1].innerText.trim();
    const snaps = window.__snaps;
    if (text && (!snaps.length || snaps[snaps.length - 1] !== text)) snaps.push(text);
  };
  new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def test_web_ui_streams_a_reply_in_chromium(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "tiny-vicuna", CONTEXT_LENGTH)
    c_port, w_port, g_port = free_port(), free_port(), free_port()
    controller = f"http://127.0.0.1:{c_port}"
    worker = f"http://127.0.0.1:{w_port}"
    web = f"http://127.0.0.1:{g_port}"
    log_dir = tmp_path / "logs"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "NO_PROXY": "*",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    py = [sys.executable, "-m"]
    commands = {
        "controller": [*py, "camel_chat.serve.controller", "--host", "127.0.0.1", "--port", str(c_port)],
        "worker": [
            *py, "camel_chat.serve.model_worker", "--host", "127.0.0.1", "--port", str(w_port),
            "--worker-address", worker, "--controller-address", controller,
            "--model-path", str(checkpoint), "--model-names", MODEL, "--device", "cpu",
        ],
        "web": [
            *py, "camel_chat.serve.gradio_web_server", "--host", "127.0.0.1", "--port", str(g_port),
            "--controller-url", controller, "--model-list-mode", "reload", "--log-dir", str(log_dir),
        ],
    }  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: tmp_path / f"{name}.log" for name in commands}

    def start(name: str) -> subprocess.Popen[bytes]:
        with logs[name].open("wb") as log:
            procs.append(subprocess.Popen(commands[name], stdout=log, stderr=subprocess.STDOUT, env=env))
        return procs[-1]

    outside: list[str] = []
    try:
        ctl = start("controller")
        wrk = start("worker")
        gui = start("web")  # starts while the worker loads; the model list is read per page load
        wait_until(lambda: healthy(f"{controller}/health"), ctl, logs["controller"], "controller")
        wait_until(lambda: healthy(f"{worker}/health"), wrk, logs["worker"], "model_worker")
        wait_until(lambda: registered(controller), wrk, logs["worker"], "worker registration")
        wait_until(lambda: healthy(web), gui, logs["web"], "gradio_web_server")

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})

                def guard(route: object) -> None:
                    host = urlparse(route.request.url).hostname or ""  # type: ignore[attr-defined]
                    if host in ("127.0.0.1", "localhost", "") or route.request.url.startswith("data:"):  # type: ignore[attr-defined]
                        route.continue_()  # type: ignore[attr-defined]
                    else:
                        outside.append(route.request.url)  # type: ignore[attr-defined]
                        route.abort()  # type: ignore[attr-defined]

                page.route("**/*", guard)
                page.goto(f"{web}/?model={MODEL.lower()}", wait_until="domcontentloaded", timeout=30_000)
                sync_api.expect(page.locator("#chatbot")).to_be_visible(timeout=30_000)
                selector = page.locator("#model_selector input")
                sync_api.expect(selector).to_have_value(MODEL, timeout=30_000)  # ?model= preselects

                page.evaluate(WATCH_JS)
                box = page.locator("#input_box textarea")
                box.fill("Tell me about camels.")
                box.press("Enter")

                sync_api.expect(page.locator("#chatbot").get_by_text("Tell me about camels.")).to_be_visible(
                    timeout=15_000
                )
                # Done when the regenerate-able reply stops changing and has no cursor.
                deadline = time.monotonic() + 60
                snaps: list[str] = []
                while time.monotonic() < deadline:
                    snaps = page.evaluate("window.__snaps")
                    if snaps and "▌" not in snaps[-1] and len(snaps) >= 2:
                        break
                    time.sleep(0.2)
                assert snaps, "no reply appeared"
                final = snaps[-1]
                assert "▌" not in final and "error_code" not in final, final
                growing = [s.replace("▌", "").strip() for s in snaps if s.replace("▌", "").strip()]
                assert len(set(growing)) >= 2, f"reply did not stream: {snaps[:5]}"
                assert any(len(a) < len(b) for a, b in itertools.pairwise(growing))

                page.locator("#upvote_btn").click()
                sync_api.expect(page.locator("#notice")).to_contain_text("upvote", timeout=10_000)

                shot = tmp_path / "webui.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()

        assert _non_blank(shot) > 16, "the screenshot is blank"
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

        records = [
            json.loads(line) for f in log_dir.glob("*-conv.json") for line in f.read_text().splitlines()
        ]
        kinds = [r["type"] for r in records]
        assert "chat" in kinds and "upvote" in kinds, kinds
        assert records[-1]["model"] == MODEL and records[-1]["ip"] == "127.0.0.1"
        assert outside == [], f"the page tried to reach the internet: {outside}"
    finally:
        stop(procs)
