"""The book's configuration: one repository URL in _config.yml turns on the repository, issue,
Binder and Colab buttons (tools/book_ext.py); without it the book has none; Thebe never loads.

Each case builds a one-page book with the repository's _config.yml (the URL replaced), its
extension, static files and bibliography, from a notebook with a stored output (no execution).
"""

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_URL = "https://github.com/example-org/aimoe"


ALT = "A title. A takeaway"


def _png_with_description() -> str:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Description", ALT)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(buf, format="PNG", pnginfo=info)
    return base64.b64encode(buf.getvalue()).decode()


def _build(tmp: Path, url: str) -> str:
    (tmp / "book").mkdir()
    shutil.copytree(ROOT / "book" / "_static", tmp / "book" / "_static")
    shutil.copytree(ROOT / "book" / "_root", tmp / "book" / "_root")
    shutil.copy(ROOT / "book" / "references.bib", tmp / "book" / "references.bib")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# One page\n"]},
                    {"cell_type": "code", "execution_count": 1, "metadata": {},
                     "outputs": [{"name": "stdout", "output_type": "stream", "text": ["2\n"]}],
                     "source": ["print(1 + 1)"]},
                    {"cell_type": "code", "execution_count": 2, "metadata": {},
                     "outputs": [{"output_type": "display_data", "metadata": {},
                                  "data": {"image/png": _png_with_description(),
                                           "text/plain": ["<Figure>"]}}],
                     "source": ["fig"]}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp / "book" / "page.ipynb").write_text(json.dumps(nb))
    (tmp / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
    cfg = (ROOT / "_config.yml").read_text()
    cfg, n_url = re.subn(r'(\n  url: )""', rf'\g<1>"{url}"', cfg)
    assert n_url == 1, "_config.yml: repository.url should be the one place naming the repository"
    cfg = cfg.replace("execute_notebooks: force", 'execute_notebooks: "off"')
    cfg = cfg.replace("book_ext: tools/", f"book_ext: {ROOT / 'tools'}/")
    (tmp / "_config.yml").write_text(cfg)
    out = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", "-W", "-n",
                          "--keep-going", str(tmp)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return (tmp / "_build" / "html" / "book" / "page.html").read_text()


@pytest.fixture(scope="module")
def with_url(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("with_url"), EXAMPLE_URL)


@pytest.fixture(scope="module")
def without_url(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("without_url"), "")


def test_repository_url_turns_on_every_button(with_url):
    assert f'href="{EXAMPLE_URL}"' in with_url  # repository button
    assert f'href="{EXAMPLE_URL}/issues/new?title=Issue%20on%20page%20' in with_url
    assert "https://mybinder.org/v2/gh/example-org/aimoe/main?urlpath=lab/tree/book/page.ipynb" \
        in with_url
    assert "https://colab.research.google.com/github/example-org/aimoe/blob/main/book/page.ipynb" \
        in with_url


def test_without_url_there_are_no_buttons(without_url):
    for needle in ("mybinder.org", "colab.research.google.com", "/issues/new",
                   "github.com/executablebooks"):
        assert needle not in without_url


@pytest.mark.parametrize("page", ["with_url", "without_url"])
def test_thebe_never_loads(page, request):
    html = request.getfixturevalue(page)
    assert "THEBE_JS_URL" not in html and "sphinx-thebe" not in html
    assert "x-thebe-config" not in html and "binder-examples" not in html


def test_nothing_loads_from_a_cdn(without_url):
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', without_url)
    links = re.findall(r'<link[^>]*\shref="([^"]+)"', without_url)
    remote = [u for u in scripts + links if u.startswith(("http:", "https:", "//"))]
    assert not remote, remote


def test_figures_get_their_caption_as_alt_text(without_url):
    assert re.search(rf'<img alt="{ALT}" src="[^"]+\.png"', without_url)


def test_the_site_root_redirects_to_the_first_page_and_names_the_favicon():
    # _build/html/index.html comes from book/_root (html_extra_path), so the TOC extension does
    # not write its own, which names no icon (browsers then fetch /favicon.ico: a 404)
    cfg = (ROOT / "_config.yml").read_text()
    assert "html_extra_path: [book/_root]" in cfg
    favicon = re.search(r"\n  favicon: (\S+)", cfg).group(1)
    root = re.search(r"^root: (\S+)$", (ROOT / "_toc.yml").read_text(), re.M).group(1)
    html = (ROOT / "book" / "_root" / "index.html").read_text()
    assert f'<meta http-equiv="Refresh" content="0; url={root}.html" />' in html
    assert f'<link rel="icon" href="_static/{Path(favicon).name}"' in html
    assert (ROOT / favicon).exists()
    assert f'href="{root}.html"' in html  # a link for browsers that do not follow the refresh
