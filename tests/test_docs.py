"""The documentation site (``make docs``): API pages for every public name, and the built
site in headless Chromium.

The public names are found here on their own (``llmfbn.__all__`` and the ``__all__`` of every
public module under ``llmfbn``), not from the docs' page generator, so a name the generator
misses fails. The build test builds a copy of ``docs/`` in a temporary folder (nothing is
written into the repository) with one tutorial executed, as ``make docs`` builds it
(warnings are errors), then opens three pages in Debian's Chromium through its ChromeDriver.
"""

import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import llmfbn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED_SOURCES = ("_build", "api", "generated", "auto_examples", "_tutorials",
                     "sg_execution_times.rst")
#: The tutorial the build test executes (the fastest); the others are shown without outputs.
TUTORIAL = "plot_01_scan_an_llm"
API_PAGE = "generated/llmfbn.plotting.plot_carpet.html"  # a function tutorial 1 uses


def _docs_helpers():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("llmfbn_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def public_names():
    """``module.name`` for every public name; modules without ``__all__`` as errors."""
    names = [f"llmfbn.{name}" for name in llmfbn.__all__]
    no_all = []
    for info in pkgutil.iter_modules(llmfbn.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"llmfbn.{info.name}")
        if not hasattr(module, "__all__"):
            no_all.append(module.__name__)
        names += [f"{module.__name__}.{name}" for name in getattr(module, "__all__", ())]
    return names, no_all


def test_every_public_name_has_an_api_page(tmp_path):
    """autosummary, run on the generated API pages, writes a page for every public name."""
    helpers = _docs_helpers()
    pages = helpers.write_api_pages(tmp_path)
    out = tmp_path / "generated"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx.ext.autosummary.generate", "-i", "-o", str(out),
         "-t", str(DOCS / "_templates"), *map(str, pages[1:])],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    names, no_all = public_names()
    assert not no_all, f"public modules without __all__: {no_all}"
    missing = [name for name in names if not (out / f"{name}.rst").is_file()]
    assert not missing, f"{len(missing)} public names have no API page: {', '.join(missing)}"
    # each page documents its object with the right directive (an import that failed
    # would leave autosummary's bare fallback)
    sample = (out / "llmfbn.networks.NetworkDecomposition.rst").read_text(encoding="utf-8")
    assert ".. autoclass:: NetworkDecomposition" in sample and ":members:" in sample


def test_the_changelog_starts_with_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\d+\.\d+\.\d+)\b", text, flags=re.MULTILINE)
    assert versions, "CHANGELOG.md has no '## X.Y.Z' heading"
    assert versions[0] == llmfbn.__version__, (
        f"CHANGELOG.md starts with {versions[0]} but llmfbn.__version__ is "
        f"{llmfbn.__version__}: add a heading for the current version")


# -- the built site -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A docs build of a copy of docs/, tutorial 1 executed with the smoke settings."""
    work = tmp_path_factory.mktemp("docs")
    repo = work / "repo"
    shutil.copytree(DOCS, repo / "docs", ignore=shutil.ignore_patterns(*GENERATED_SOURCES))
    for name in ("tutorials", "data", "README.md", "CHANGELOG.md"):
        (repo / name).symlink_to(ROOT / name)
    env = dict(os.environ, LLMFBN_DOCS_EXAMPLES=f"/{TUTORIAL}", HF_HUB_OFFLINE="1",
               LLMFBN_RESULTS=str(work / "results"), MPLBACKEND="Agg")
    env.pop("LLMFBN_DOCS_FULL", None)
    html = work / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
         "-d", str(work / "doctrees"), str(repo / "docs"), str(html)],
        cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout[-2000:] + done.stderr[-4000:])
    assert any((work / "results").iterdir())  # the tutorial wrote under LLMFBN_RESULTS
    return html


@pytest.mark.integration
def test_the_site_has_a_page_for_every_public_name(site):
    names, _ = public_names()
    missing = [name for name in names if not (site / "generated" / f"{name}.html").is_file()]
    assert not missing, f"{len(missing)} public names have no page: {', '.join(missing)}"


#: A tag that makes the browser fetch from the network: <link href>, <script src>, <img src>,
#: <iframe src>, <source src>; in CSS, url(...) and @import.
_ONLINE = re.compile(r"<(?:link|script|img|iframe|source|video|audio)\b[^>]*?\b(?:href|src)\s*="
                     r"\s*[\"']?(?:https?:)?//", re.IGNORECASE)
_ONLINE_CSS = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"']?)(?:https?:)?//", re.IGNORECASE)


@pytest.mark.integration
def test_the_site_fetches_nothing_online(site):
    """No font, style sheet, script or image from the network: the site works offline."""
    online = []
    for path in site.rglob("*"):
        if path.suffix == ".html":
            found = _ONLINE.findall(path.read_text(encoding="utf-8", errors="replace"))
        elif path.suffix in (".css", ".js"):
            found = _ONLINE_CSS.findall(path.read_text(encoding="utf-8", errors="replace"))
        else:
            continue
        online += [f"{path.relative_to(site)}: {hit}" for hit in found]
    assert not online, "\n".join(online[:20])


def _browser(tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        what = "chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("LLMFBN_REQUIRE_CHROMIUM"):
            pytest.fail(f"LLMFBN_REQUIRE_CHROMIUM is set but {what} are not both installed")
        pytest.skip(f"headless Chromium needs {what}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1366,900",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


#: Every <img> made eager and scrolled to, then (src, complete, naturalWidth) once all settle.
_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(img => { img.loading = "eager"; img.scrollIntoView(); });
const settle = () => images.every(img => img.complete) ?
    done(images.map(img => [img.getAttribute("src"), img.complete, img.naturalWidth])) :
    setTimeout(settle, 100);
settle();
"""


def _page(driver, site, page):
    driver.get((site / page).as_uri())
    images = driver.execute_async_script(_IMAGES)
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"{page}: images not loaded: {broken}"
    return driver.title, driver.find_element("css selector", "[role=main]").text, images


@pytest.mark.integration
def test_index_api_and_gallery_pages_render_with_their_figures(site, tmp_path):
    driver = _browser(tmp_path)
    try:
        driver.set_script_timeout(60)
        title, text, images = _page(driver, site, "index.html")
        assert "llmfbn" in title and "tokens are the time axis" in text
        assert len(images) >= 5  # one thumbnail per tutorial
        assert any(TUTORIAL in src for src, _, _ in images)

        title, text, images = _page(driver, site, API_PAGE)
        assert "plot_carpet" in title
        assert "llmfbn.plotting.plot_carpet(" in text and "parameters" in text.lower()
        assert any(TUTORIAL in src for src, _, _ in images)  # "Tutorials using plot_carpet"

        title, text, images = _page(driver, site, f"auto_examples/{TUTORIAL}.html")
        assert "Scan an LLM" in title
        figures = [src for src, _, _ in images if re.search(rf"sphx_glr_{TUTORIAL}_\d{{3}}", src)]
        assert len(figures) >= 3, images  # carpet, brain maps, nilearn's stat map
    finally:
        driver.quit()
