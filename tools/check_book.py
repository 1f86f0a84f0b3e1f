"""Check the rendered book: every chapter page exists, shows at least one figure, and carries no
error output. Run after `make study` (CI does)."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    html = ROOT / "_build" / "html"
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
        for bad in ("Traceback (most recent call last)", "output_error", "stderr"):
            if bad in text:
                problems.append(f"{ch}: page contains {bad!r}")
        print(f"{ch}: {n_img} figures")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
