"""Turn nbval's comment markers into cell tags, so that the rendered book shows none of them.

nbval reads a cell's markers either from a first-line comment (``# NBVAL_CHECK_OUTPUT``) or from
the cell's tags (``nbval-check-output``); the book hides tags, not comments. This script moves
every marker comment of the given notebooks into the equivalent tag, drops the comment line, and
with ``--strip-widget-state`` also removes the saved ipywidgets state (the static book shows a
"run this live" note instead of frozen widgets, see aimoe_lib.widgets.controls).

    python tools/nbval_tags.py book/01_tile.ipynb book/02_moe.ipynb [--strip-widget-state]
    python tools/nbval_tags.py --check book/*.ipynb    # exit 1 if a marker comment is left

Only the JSON of the notebook changes: cell sources lose their marker line, outputs stay as they
are (so nbval compares the same stored outputs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MARKERS = {
    "# NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "# NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "# NBVAL_SKIP": "nbval-skip",
    "# NBVAL_RAISES_EXCEPTION": "nbval-raises-exception",
}
"""nbval's comment markers and the tags nbval 0.11 reads in their place."""


def _lines(source) -> list[str]:
    text = "".join(source) if isinstance(source, list) else source
    return text.splitlines(keepends=True)


def convert(nb: dict) -> int:
    """Move marker comments of ``nb``'s code cells into tags, in place; the number moved."""
    moved = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        lines = _lines(cell.get("source", ""))
        kept = []
        for line in lines:
            tag = MARKERS.get(line.strip())
            if tag is None:
                kept.append(line)
                continue
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if tag not in tags:
                tags.append(tag)
            moved += 1
        if len(kept) != len(lines):
            cell["source"] = kept
    return moved


def leftover(nb: dict) -> list[int]:
    """Indices of code cells that still carry a marker comment."""
    return [i for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"
            and any(line.strip() in MARKERS for line in _lines(c.get("source", "")))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="change nothing; fail on marker comments")
    ap.add_argument("--strip-widget-state", action="store_true",
                    help="also drop metadata.widgets (saved ipywidgets state)")
    args = ap.parse_args(argv)
    bad = 0
    for path in args.notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if args.check:
            cells = leftover(nb)
            if cells:
                print(f"{path}: marker comments in code cells {cells}; run tools/nbval_tags.py")
                bad += 1
            continue
        moved = convert(nb)
        stripped = (args.strip_widget_state
                    and nb.get("metadata", {}).pop("widgets", None) is not None)
        if moved or stripped:
            text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
            path.write_text(text, encoding="utf-8")
        print(f"{path}: {moved} marker(s) moved to tags" + ("; widget state removed" if stripped
                                                             else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
