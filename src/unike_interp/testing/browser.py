"""A real headless browser for tests and screenshots: Chromium driven by Selenium through ChromeDriver.

Both come from the system (Debian: ``apt-get install chromium chromium-driver``; ``make test``
installs them where it may), Selenium from the ``dev`` extra. :func:`browser_or_reason` says
what is missing instead of failing, so a laptop without Chromium skips the browser tests; set
``UNIKE_REQUIRE_BROWSER=1`` (CI does) to make a missing browser a failure.

    with open_browser() as page:
        page.get(Path("runs/x/report.html").resolve().as_uri())
        page.save_screenshot("report.png")
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

_BINARIES = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> tuple[str | None, str | None]:
    """``(chromium, chromedriver)`` paths (``UNIKE_CHROMIUM`` / ``UNIKE_CHROMEDRIVER`` win; None where absent)."""
    browser = os.environ.get("UNIKE_CHROMIUM") or next(filter(None, map(shutil.which, _BINARIES)), None)
    driver = os.environ.get("UNIKE_CHROMEDRIVER") or shutil.which("chromedriver")
    return browser, driver


def browser_or_reason() -> str | None:
    """None where a headless browser can be driven here, else what is missing and how to add it."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    browser, driver = find_browser()
    if not browser or not driver:
        return ("no Chromium and ChromeDriver here (Debian: apt-get install chromium chromium-driver; or set "
                "UNIKE_CHROMIUM and UNIKE_CHROMEDRIVER)")
    return None


@contextlib.contextmanager
def open_browser(width: int = 1400, height: int = 1000) -> Iterator["selenium.webdriver.Chrome"]:  # noqa: F821
    """A headless Chromium window of ``width`` x ``height`` CSS pixels, closed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = browser_or_reason()
    if reason:
        raise RuntimeError(reason)
    browser, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # --no-sandbox: containers and root (CI) have no user namespace for Chromium's sandbox.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)
    page = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield page
    finally:
        page.quit()
