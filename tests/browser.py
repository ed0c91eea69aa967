"""Headless Chromium for the browser tests: a page's DOM after its scripts ran,
and the text a person would read in it."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
NO_CHROMIUM = "no chromium binary: install Debian's chromium package (.ci/run does)"


def chromium() -> str | None:
    """The Chromium binary on PATH, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def dump_dom(binary: str, url: str, profile: Path, *, offline: bool = False,
             budget_ms: int = 20000) -> str:
    """The DOM of ``url`` once its scripts have run for ``budget_ms`` of
    virtual time. ``offline``: every http(s) request goes to a closed port, so
    the page renders only from what it carries."""
    done = subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}", "--window-size=1600,1200",
         *(["--proxy-server=127.0.0.1:9"] if offline else []),
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def visible_text(dom: str) -> list[str]:
    """The DOM's text nodes in order (scripts and styles left out), stripped."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.DOTALL)
    return [line for part in re.split(r"<[^>]+>", text)
            if (line := html.unescape(part).strip())]
