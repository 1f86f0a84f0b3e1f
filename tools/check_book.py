"""Check the rendered book: every chapter page exists, shows at least one figure, carries no error
output, no visible nbval marker and no script from another host, and fits the 5 MB page budget
(page plus its images). Run after `make study` (CI does); tests/browser checks the pages in
Chromium."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE_BUDGET_BYTES = 5_000_000
"""Largest chapter page with its images, bytes."""


def main() -> int:
    html = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "html"
    toc = (ROOT / "_toc.yml").read_text()
    chapters = re.findall(r"file:\s*(book/\d\d_\w+)", toc)
    problems = []
    if not (html / "index.html").exists():
        problems.append("_build/html/index.html is missing")
    for ch in chapters:
        page = html / f"{ch}.html"
        if not page.exists():
            problems.append(f"{page} is missing")
            continue
        text = page.read_text()
        n_img = len(re.findall(r"<img\b", text))
        if n_img == 0:
            problems.append(f"{ch}: no figure rendered")
        for bad in ("Traceback (most recent call last)", "output_error", "stderr", "NBVAL_",
                    "DESIGN.md"):
            if bad in text:
                problems.append(f"{ch}: page contains {bad!r}")
        remote = re.findall(r'<script[^>]*\ssrc="(https?://[^"]+)"', text)
        if remote:
            problems.append(f"{ch}: scripts from another host: {remote}")
        size = len(text.encode())
        for src in set(re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)):
            if not src.startswith("data:"):
                img = (page.parent / src).resolve()
                size += img.stat().st_size if img.exists() else 0
        if size > PAGE_BUDGET_BYTES:
            problems.append(f"{ch}: {size:,} bytes with its images > {PAGE_BUDGET_BYTES:,}")
        n_sliders = text.count('class="aimoe-slider"')
        print(f"{ch}: {n_img} figures, {n_sliders} static sliders, {size / 1e6:.2f} MB")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
