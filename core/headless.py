"""How the project's tools and tests start a headless chromium (Debian's, driven by Playwright): the INT8 gate
in a browser (``interformer-quantize --browser``), the browser benchmarks in ``scripts/``, the annotator's page
tests. Constants only: Playwright is imported where a browser is started."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")  # Debian's (apt-get install chromium), not Playwright's download
# Headless, no GPU, nothing fetched or updated in the background (loopback only).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
