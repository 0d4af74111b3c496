"""What the screenshot scripts share: Debian's chromium driven by Playwright (never a browser
download), and PNGs reduced to 256 colours."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium_page(width: int, height: int = 800) -> Iterator[Page]:
    """A page of a headless chromium with a viewport ``width`` × ``height`` pixels."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def save_quantized(path: Path) -> None:
    """Rewrite the PNG at ``path`` with 256 colours: a third of the size, and no visible
    change for a page of flat colours."""
    Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(
        path, optimize=True)
