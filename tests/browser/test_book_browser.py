"""The rendered book as a reader sees it: every page opened in headless Chromium, served from
127.0.0.1 with every other host unreachable.

Per page: no console errors, every image loaded, nothing wider than a 1280 px window and no
element that scrolls sideways, one search field, no sidebar toggle that cannot toggle, no visible
nbval marker, every formula typeset (by the MathJax bundled with the book), every local link and
anchor resolves, the page with its images within the 5 MB budget; on pages with static sliders,
moving each slider changes the figure.
Screenshots go to ``_build/browser/`` (the top of each page, and each static slider moved to a
non-default position).

The book is read from ``$AIMOE_BOOK_HTML`` (default ``_build/html``): ``make test`` builds it
first when it is missing (``make book-quick``) or reuses the one ``make study`` built.
Chromium and its driver come from Debian (``apt-get install -y chromium chromium-driver``);
``make test`` installs them where it can. Without them these tests are skipped with that message.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOK = Path(os.environ.get("AIMOE_BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = ROOT / "_build" / "browser"
WIDTH, HEIGHT = 1280, 900
"""The reader's window, CSS pixels."""
PAGE_BUDGET_BYTES = 5_000_000
"""Largest chapter page with its images (the budget of the static-slider design)."""
SLIDER_PAGES = ("book/01_tile.html", "book/02_moe.html", "book/04_simulation.html",
                "book/05_scaling.html", "book/07_gpu.html")
"""Pages that must carry at least one static slider (add chapters as they get one)."""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _pages() -> list[str]:
    if not (BOOK / "index.html").exists():
        return []
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(str(p.relative_to(BOOK)) for p in BOOK.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts)


PAGES = _pages()


def test_the_book_is_built():
    assert (BOOK / "index.html").exists(), (
        f"{BOOK}/index.html is missing: build the book first (make book-quick, or make study)")
    for page in SLIDER_PAGES:
        assert page in PAGES, f"{page} is not in the built book"


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


@functools.cache
def _parse(page: str) -> _Ids:
    p = _Ids()
    p.feed((BOOK / page).read_text(encoding="utf-8"))
    return p


@pytest.mark.parametrize("page", PAGES)
def test_local_links_and_anchors_resolve(page):
    broken = []
    for href in _parse(page).links:
        url = urllib.parse.urlsplit(href)
        if url.scheme or url.netloc or href.startswith("mailto:"):
            continue
        target = page if not url.path else os.path.normpath(
            os.path.join(os.path.dirname(page), urllib.parse.unquote(url.path)))
        path = BOOK / target
        if path.is_dir():
            path, target = path / "index.html", os.path.join(target, "index.html")
        if not path.exists():
            broken.append(f"{href}: no file {target}")
            continue
        frag = urllib.parse.unquote(url.fragment)
        if frag and target.endswith(".html") and frag not in _parse(target).ids:
            broken.append(f"{href}: no anchor #{frag} in {target}")
    assert not broken, f"{page}: broken local links:\n" + "\n".join(sorted(set(broken)))


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith("book/")])
def test_page_with_its_images_fits_the_budget(page):
    text = (BOOK / page).read_text(encoding="utf-8")
    total = len(text.encode())
    for src in set(re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)):
        if not src.startswith("data:"):
            f = BOOK / os.path.normpath(os.path.join(os.path.dirname(page), src))
            total += f.stat().st_size if f.exists() else 0
    assert total <= PAGE_BUDGET_BYTES, f"{page}: {total:,} bytes > {PAGE_BUDGET_BYTES:,}"


# --- in the browser ------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_Quiet, directory=str(BOOK))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Chromium is not installed, so the browser checks cannot run: install it with "
                    "`apt-get install -y chromium chromium-driver` (make test does, as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars",
                # Network off: every host but 127.0.0.1 is unresolvable, every proxied request dies.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)  # image and MathJax waits on a loaded machine
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


WAIT_IMAGES = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(i => { i.loading = "eager"; });
const t0 = Date.now();
(function poll() {
  if (imgs.every(i => i.complete) || Date.now() - t0 > 15000) {
    done(imgs.filter(i => !i.complete || i.naturalWidth === 0)
             .map(i => (i.getAttribute("src") || "").slice(0, 120)));
  } else { setTimeout(poll, 100); }
})();
"""

WAIT_MATH = """
const done = arguments[arguments.length - 1];
const maths = document.querySelectorAll("span.math, div.math");
if (!maths.length) { done([]); }
else if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
  done(["math on the page but MathJax did not start"]);
} else {
  MathJax.startup.promise.then(() => done(
    Array.from(maths).filter(m => !m.querySelector("mjx-container"))
         .map(m => "math not typeset: " + m.textContent.slice(0, 60))));
}
"""

TOO_WIDE = """
const vw = document.documentElement.clientWidth;
const out = [];
const flagged = new Set();
function name(e) {
  const cls = typeof e.className === "string" ? e.className.trim() : "";
  return e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (cls ? "." + cls.split(/\\s+/).join(".") : "");
}
for (const e of document.querySelectorAll("body *")) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  const s = getComputedStyle(e);
  if (s.visibility === "hidden" || s.display === "none") continue;
  if (flagged.has(e.parentElement)) { flagged.add(e); continue; }  // the outermost only
  if (r.right > vw + 1 && s.position !== "fixed") {
    flagged.add(e);
    out.push("wider than the window: " + name(e) + " (right edge " + Math.round(r.right) + ")");
  } else if ((s.overflowX === "auto" || s.overflowX === "scroll")
             && e.scrollWidth > e.clientWidth + 1) {
    flagged.add(e);
    out.push("scrolls sideways: " + name(e) + " (" + e.scrollWidth + " > " + e.clientWidth +
             " px): " + (e.textContent || "").trim().slice(0, 60));
  }
}
const page = document.documentElement.scrollWidth;
if (page > vw + 1) out.push("page scrolls sideways: " + page + " px");
return out;
"""


READER = """
const out = [];
const visible = e => e.offsetParent !== null && getComputedStyle(e).visibility !== "hidden";
const searches = Array.from(document.querySelectorAll(".search-button-field")).filter(visible);
if (searches.length > 1) out.push(searches.length + " search fields on the page");
const toggles = Array.from(document.querySelectorAll(".primary-toggle")).filter(visible);
const sidebar = document.querySelector(".bd-sidebar-primary");
const fixed = sidebar && getComputedStyle(sidebar).position === "fixed";
if (toggles.length && sidebar && visible(sidebar) && !fixed)
  out.push("a sidebar toggle is shown next to a sidebar that is always open");
const text = document.body.innerText;
for (const word of ["NBVAL_", "DESIGN.md"]) {
  if (text.includes(word)) out.push("visible text: " + word);
}
return out;
"""


def _severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _shot_name(page: str, suffix: str = "") -> Path:
    return SHOTS / (page.replace("/", "_").removesuffix(".html") + suffix + ".png")


def _open(browser, server, page):
    """Load ``page``; a redirect page (jupyter-book's index.html is a meta refresh) is followed
    to its target before anything runs in it, since a script started while the browser
    navigates away never returns."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/{page}")
    if 'http-equiv="Refresh"' in (BOOK / page).read_text(encoding="utf-8", errors="replace"):
        WebDriverWait(browser, 60).until(
            lambda d: not d.current_url.endswith("/" + page)
            and d.execute_script("return document.readyState") == "complete")


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(page, server, browser):
    browser.get_log("browser")  # drop what earlier pages left
    _open(browser, server, page)
    broken_images = browser.execute_async_script(WAIT_IMAGES)
    problems = [f"image not loaded: {src}" for src in broken_images]
    problems += [f"console: {m}" for m in _severe(browser)]
    problems += browser.execute_async_script(WAIT_MATH)
    problems += browser.execute_script(TOO_WIDE)
    problems += browser.execute_script(READER)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(_shot_name(page)))
    assert not problems, f"{page}:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith("book/")])
def test_static_sliders_move_the_figure(page, server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{server}/{page}")
    if page in SLIDER_PAGES:
        # the sliders are in the page's HTML; wait for them rather than trust that get() left
        # the DOM complete (one CI run under load once found none, and a rerun did)
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            WebDriverWait(browser, 20).until(
                EC.presence_of_element_located((By.CSS_SELECTOR, "div.aimoe-slider")))
        except TimeoutException:
            pass
    sliders = browser.find_elements(By.CSS_SELECTOR, "div.aimoe-slider")
    if page in SLIDER_PAGES:
        assert sliders, (f"{page} has no static slider (browser at {browser.current_url!r}, "
                         f"title {browser.title!r})")
    for k, slider in enumerate(sliders):
        img = slider.find_element(By.CSS_SELECTOR, "img.aimoe-slider-frame")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
        for inp in slider.find_elements(By.CSS_SELECTOR, "input.aimoe-slider-input"):
            assert inp.is_enabled(), f"{page}: slider {k} was not wired by its script"
            before = (img.get_attribute("src"), inp.get_attribute("value"))
            # A reader's move: focus the range and press End (its last value) or Home.
            at_end = int(inp.get_attribute("value")) == int(inp.get_attribute("max"))
            inp.send_keys(Keys.HOME if at_end else Keys.END)
            after = (img.get_attribute("src"), inp.get_attribute("value"))
            assert after[1] != before[1], f"{page}: slider {k} did not move"
            assert after[0] != before[0], f"{page}: slider {k} moved, the figure did not change"
            loaded = browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
            assert loaded, f"{page}: slider {k}'s new frame did not load"
        browser.save_screenshot(str(_shot_name(page, f"_slider{k}")))
    assert not _severe(browser), f"{page}: console errors after moving sliders"
