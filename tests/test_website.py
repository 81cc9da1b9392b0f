"""The course website: built with the README's docs command, then read in headless Chromium.

The site is built once per test session into a temporary folder and served from 127.0.0.1, as an
instructor would host it. Without Chromium, its WebDriver or the docs packages the tests are skipped
with a reason that says how to get them. A screenshot of the first lesson is saved to
docs/_build/website-test/ (git-ignored): look at it after changing the site.
"""
import functools
import http.server
import json
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from test_project_setup import _readme_command

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_IN_README = "docs/_build/html"
SCREENSHOT_DIR = ROOT / "docs" / "_build" / "website-test"
BROWSERS = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
GET_A_BROWSER = (
    "no headless Chromium with its WebDriver here: run `bash tools/install_browser.sh` "
    "(Debian/Ubuntu: `sudo apt-get install chromium chromium-driver`)"
)
# Folders whose notebooks each become a page (globbed, as docs/conf.py does).
NOTEBOOK_FOLDERS = ("notebooks", "exercises", "solutions")


def _notebooks(folder):
    return sorted(p for p in (ROOT / folder).glob("[0-9]*.ipynb"))


FIRST_LESSON = _notebooks("notebooks")[1]  # 00 is the set-up tour; 01 is the first lesson


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """Build the site with the README's docs command, writing to a fresh temporary folder."""
    pytest.importorskip("sphinx", reason="the docs packages are missing: pip install -e '.[docs]'")
    pytest.importorskip("myst_nb", reason="the docs packages are missing: pip install -e '.[docs]'")
    command = _readme_command("docs-command")
    assert OUTPUT_IN_README in command, f"the docs command builds into {OUTPUT_IN_README}"
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        shlex.split(command.replace(OUTPUT_IN_README, str(out))), cwd=ROOT, capture_output=True, text=True
    )
    assert build.returncode == 0, f"{command}\n{build.stdout[-3000:]}\n{build.stderr[-6000:]}"
    return out


@pytest.fixture(scope="session")
def served(site):
    """The built site served over HTTP from 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason=GET_A_BROWSER)
    binary = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(GET_A_BROWSER)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, url):
    browser.get_log("performance")  # forget the requests of earlier pages
    browser.get(url)
    _wait(browser, "document.readyState === 'complete'", f"{url} loads")


def _wait(browser, condition_js, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not browser.execute_script(f"return Boolean({condition_js});"):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def _page(folder_and_stem):
    return f"{folder_and_stem}.html"


def _lesson_url(served):
    return served + _page(f"notebooks/{FIRST_LESSON.stem}")


@pytest.fixture(scope="session")
def first_lesson(browser, served):
    """The first lesson opened, its pictures loaded and its math typeset; a screenshot saved."""
    _open(browser, _lesson_url(served))
    browser.execute_script("for (const img of document.images) img.scrollIntoView();")
    _wait(browser, "Array.from(document.images).every(img => img.complete)", "every picture has loaded")
    _wait(browser, "window.MathJax && MathJax.startup && MathJax.startup.promise", "MathJax has started")
    browser.execute_async_script("MathJax.startup.promise.then(() => arguments[0]());")  # typeset done
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.execute_script("document.querySelector('.cell_output img').scrollIntoView();")
    browser.save_screenshot(str(SCREENSHOT_DIR / f"{FIRST_LESSON.stem}_first_picture.png"))
    browser.execute_script("window.scrollTo(0, 0);")
    browser.save_screenshot(str(SCREENSHOT_DIR / f"{FIRST_LESSON.stem}.png"))
    return [r["params"]["request"]["url"] for r in requests if r["method"] == "Network.requestWillBeSent"]


def test_docs_command_builds_with_warnings_as_errors(site):
    assert re.search(r"(^|\s)-W(\s|$)", _readme_command("docs-command"))
    assert (site / "index.html").is_file()


def test_home_page_is_the_readme(browser, served):
    _open(browser, served)
    readme_title = (ROOT / "README.md").read_text().splitlines()[0].lstrip("# ").strip()
    assert browser.find_element("css selector", "article h1").text.strip().rstrip("#¶ ") == readme_title


def test_every_notebook_exercise_and_solution_has_a_page_in_order(browser, served):
    _open(browser, served)
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('.bd-sidebar a.reference.internal'), a => a.href);"
    )
    pages = [urlparse(link).path.lstrip("/") for link in links]
    for folder in NOTEBOOK_FOLDERS:
        expected = [_page(f"{folder}/{nb.stem}") for nb in _notebooks(folder)]
        assert expected, f"{folder}/ has notebooks"
        assert [p for p in pages if p.startswith(f"{folder}/") and p in expected] == expected
    for readme in ("exercises/README", "benchmarks/README", "docs/api"):
        assert _page(readme) in pages


def test_first_lesson_page_shows_its_pictures(browser, first_lesson):
    sizes = browser.execute_script(
        "return Array.from(document.images, img => [img.getAttribute('src'), img.naturalWidth]);"
    )
    stored_pictures = sum(
        "image/png" in output.get("data", {})
        for cell in json.loads(FIRST_LESSON.read_text())["cells"]
        for output in cell.get("outputs", [])
    )
    assert stored_pictures > 0
    assert len([src for src, _ in sizes if "_images/" in src]) >= stored_pictures
    assert [src for src, width in sizes if width == 0] == []


def test_first_lesson_page_typesets_its_math(browser, first_lesson):
    counts = browser.execute_script(
        "const math = document.querySelectorAll('main span.math, main div.math');"
        "return [math.length, Array.from(math).filter(m => m.querySelector('mjx-container')).length,"
        "        document.querySelectorAll('mjx-merror').length];"
    )
    math, typeset, errors = counts
    assert math > 0
    assert (typeset, errors) == (math, 0)


def test_first_lesson_page_loads_nothing_from_another_host(served, first_lesson):
    assert first_lesson, "the browser reported the page's requests"
    other_hosts = [url for url in first_lesson if not url.startswith((served, "data:", "blob:"))]
    assert other_hosts == []


def test_no_page_links_a_script_style_sheet_font_or_image_from_another_host(site):
    external = re.compile(r"<(script|link|img|source|iframe)\b[^>]*\b(src|href)=\"(https?:)?//", re.I)
    offenders = [str(p.relative_to(site)) for p in site.rglob("*.html") if external.search(p.read_text())]
    assert offenders == []


def test_notebook_page_carries_its_colab_badge_and_a_download_link(browser, served, first_lesson):
    colab = browser.execute_script(
        "return Array.from(document.querySelectorAll('main a'), a => a.href)"
        ".filter(h => h.startsWith('https://colab.research.google.com/'));"
    )
    assert any(href.endswith(f"/{FIRST_LESSON.parent.name}/{FIRST_LESSON.name}") for href in colab)
    download = browser.find_element("css selector", "main a.notebook-download").get_attribute("href")
    assert download.endswith(FIRST_LESSON.name)
    fetched = browser.execute_async_script(
        "fetch(arguments[0]).then(r => r.json()).then(nb => arguments[1](nb.cells.length));", download
    )
    assert fetched == len(json.loads(FIRST_LESSON.read_text())["cells"])


def test_search_finds_dynamic_thresholding(browser, served):
    _open(browser, served + "search.html?q=dynamic+thresholding")
    _wait(browser, "document.querySelectorAll('#search-results ul.search li').length > 0",
          "the search lists results")
    results = browser.execute_script(
        "return Array.from(document.querySelectorAll('#search-results ul.search li a'), a => a.href);"
    )
    assert any("thresholding" in urlparse(href).path for href in results)
    browser.save_screenshot(str(SCREENSHOT_DIR / "search.png"))


def test_api_page_lists_imagen_sample(browser, served):
    _open(browser, served + _page("docs/api"))
    signature = browser.find_element("css selector", "[id='minimagen.Imagen.Imagen.sample']")
    assert signature.is_displayed()
    assert signature.text.startswith("sample(")
    browser.execute_script("arguments[0].scrollIntoView();", signature)
    browser.save_screenshot(str(SCREENSHOT_DIR / "api.png"))


def test_no_internal_link_or_picture_is_broken(site):
    """Every link from one page of the site to another (and to an anchor in it) lands somewhere, and
    every picture a page shows is in the site."""
    href = re.compile(r"<(?:a\b[^>]*\bhref|img\b[^>]*\bsrc)=\"([^\"]+)\"", re.I)
    ids = {}

    def ids_of(page):
        if page not in ids:
            ids[page] = set(re.findall(r"\bid=\"([^\"]+)\"", page.read_text()))
        return ids[page]

    broken = []
    for page in site.rglob("*.html"):
        for link in href.findall(page.read_text()):
            if re.match(r"^([a-z][a-z0-9+.-]*:|//)", link, re.I):  # another host, mailto:, javascript:
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path.split("?")[0]).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or (anchor and target.suffix == ".html" and anchor not in ids_of(target)):
                broken.append(f"{page.relative_to(site)} -> {link}")
    assert broken == []
