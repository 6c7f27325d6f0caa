"""The web UI in a real browser, for the browser tests: headless Debian Chromium driven by
Playwright with its executable path set (no browser downloads).

    sync_api = playwright_sync_api()             at module level: skips the module without them
    with chromium_page(url) as page: ...         the chat page loaded; on leaving, fails if the
                                                 page asked any non-loopback host (each such
                                                 request is aborted and recorded)
    send(page, text) -> snapshots                types a message and returns the reply's text at
                                                 every DOM change until it settles (no cursor)
    open_parameters(page), slider_box(page, id)  the Parameters accordion, a slider's number box
    conversation_log(log_dir)                    the web server's JSON-lines log, as records
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = "/usr/bin/chromium"
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
CURSOR = "▌"

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
  if (window.__watch) window.__watch.disconnect();
  window.__watch = new MutationObserver(read);
  window.__watch.observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def playwright_sync_api() -> ModuleType:
    """Playwright's sync API; skips the calling test module without Chromium or Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="playwright missing (pip install playwright)")


@contextmanager
def chromium_page(url: str, viewport: dict[str, int] | None = None) -> Iterator[Page]:
    """`url` opened in headless Chromium, its chat visible."""
    from playwright.sync_api import expect, sync_playwright

    outside: list[str] = []

    def guard(route: Any) -> None:
        request_url = route.request.url
        if (urlparse(request_url).hostname or "") in ("127.0.0.1", "localhost", "") or request_url.startswith(
            "data:"
        ):
            route.continue_()
        else:
            outside.append(request_url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1100, "height": 900})
            page.route("**/*", guard)
            page.goto(url, wait_until="domcontentloaded", timeout=30_000)
            expect(page.locator("#chatbot")).to_be_visible(timeout=30_000)
            yield page
        finally:
            browser.close()
    assert outside == [], f"the page tried to reach the internet: {outside}"


def send(page: Page, text: str, timeout: float = 60) -> list[str]:
    """Sends `text` with Enter; the last bot message's texts as it streamed, the last one
    without the cursor unless `timeout` seconds passed first."""
    from playwright.sync_api import expect

    page.evaluate(WATCH_JS)
    box = page.locator("#input_box textarea")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("#chatbot").get_by_text(text)).to_be_visible(timeout=15_000)
    deadline = time.monotonic() + timeout
    snaps: list[str] = []
    while time.monotonic() < deadline:
        snaps = page.evaluate("window.__snaps")
        if snaps and CURSOR not in snaps[-1] and len(snaps) >= 2:
            break
        time.sleep(0.2)
    return snaps


def open_parameters(page: Page) -> None:
    """Opens (or, when open, closes) the Parameters accordion; closed, its sliders are not rendered."""
    page.get_by_text("Parameters", exact=True).click()


def slider_box(page: Page, elem_id: str) -> Locator:
    """The number box of the slider `elem_id` ("temperature", "top_p"): read it, or fill + Enter."""
    return page.locator(f"#{elem_id} input[type=number]")


def conversation_log(log_dir: Path) -> list[dict[str, Any]]:
    files = sorted(log_dir.glob("*-conv.json"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]
