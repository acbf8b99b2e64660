"""The course in a real browser: headless Chromium (Debian's), driven by Selenium.

- JupyterLab, started as ``make lab`` starts it (on a temporary copy of course/), runs notebook 00:
  the first check renders its one-line message; a learner's fix, typed into the exercise, passes.
- Notebook 01's widget explorer renders a figure, and moving a slider redraws it.
- The built site's pages typeset their math (compared with MathJax's own rendering of the same
  TeX) and show the notebooks' figures (compared pixel by pixel with the PNGs the notebook stores).

Skipped, with the reason, where Chromium, chromedriver or Selenium is missing
(``apt-get install chromium chromium-driver``; ``pip install -e ".[site]"``).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pytest

from emgeo.config import COURSE_DIR, SOLUTIONS_DIR

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser here: `apt-get install chromium chromium-driver` to run these",
)
JUPYTER = Path(sys.executable).parent / "jupyter"
WINDOW = (1280, 1000)


# ---------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(
    driver, what: str, predicate: Callable[[], Any], timeout: float, every: float = 0.25
) -> Any:
    """Wait with Selenium's WebDriverWait until ``predicate`` returns something truthy (a
    WebDriverException, such as a stale element, counts as not yet); return that value.

    On a timeout the test fails naming ``what``, with a screenshot of the page saved and named.
    """
    wait = WebDriverWait(
        driver, timeout, poll_frequency=every, ignored_exceptions=(WebDriverException,)
    )
    try:
        return wait.until(lambda _: predicate())
    except TimeoutException:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"emgeo-browser-{int(time.time())}.png"
        driver.save_screenshot(str(path))
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (the page then: {path})")


def _png(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    background = Image.new("RGBA", image.size, "white")
    return Image.alpha_composite(background, image.convert("RGBA")).convert("L")


def _ink(image):
    """The image cropped to what is drawn on it (a screenshot's position is off by sub-pixels)."""
    from PIL import ImageOps

    box = ImageOps.invert(image).point(lambda v: 255 if v > 40 else 0).getbbox()
    return image.crop(box) if box else image


def _dark_fraction(image) -> float:
    """The share of an image's pixels that are drawn dark (text, lines), 0 to 1."""
    histogram = image.histogram()
    return sum(histogram[:128]) / max(1, sum(histogram))


def _difference(a, b, width: int = 240) -> float:
    """Mean absolute difference (0-255) of what two grey images draw, at one small size."""
    import numpy as np
    from PIL import ImageFilter

    a, b = _ink(a), _ink(b)
    size = (width, max(1, round(width * a.height / a.width)))
    x, y = (np.asarray(i.resize(size).filter(ImageFilter.GaussianBlur(1)), float) for i in (a, b))
    return float(np.abs(x - y).mean())


def _show(driver, element) -> None:
    """Scroll ``element`` to the middle of the window at once (no smooth scrolling) and let the
    browser paint it before anything is read or photographed."""
    driver.execute_async_script(
        "const [e, done] = arguments;"
        "e.scrollIntoView({block: 'center', behavior: 'instant'});"
        "requestAnimationFrame(() => requestAnimationFrame(() => done()));",
        element,
    )


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# ---------------------------------------------------------------- JupyterLab, as `make lab` runs it


def _lab_env(home: Path) -> dict[str, str]:
    from emgeo.course.notebooks import notebook_env

    env = notebook_env()
    settings = home / "lab-settings"
    notification = (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
    )
    return env


def _fast_sweep(path: Path) -> None:
    """Notebook 01's copy trains its sweep for 300 steps instead of 5,000 (the explorer's input),
    with the course's versions of the exercises, as a learner who skipped them goes on."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "sweep = toy.train_sweep(" in c.source)
    cell.source = re.sub(r"steps=[\d_]+", "steps=300", cell.source, count=1)
    cell.source = cell.source.replace("trainer=train_toy", 'trainer=checks.reference("train_toy")')
    cell.source = cell.source.replace(
        "model_cls=ToyModel", 'model_cls=checks.reference("toy_model")'
    )
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser) -> Iterator[str]:
    """JupyterLab on a copy of course/, on a free local port with a token; yields its base URL
    (the browser waits for it to answer)."""
    home = tmp_path_factory.mktemp("lab")
    course = home / "course"
    shutil.copytree(COURSE_DIR, course)
    _fast_sweep(course / "01_toy_superposition.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(JUPYTER), "lab", str(course), "--no-browser", f"--port={port}"]
    cmd += ["--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    cmd += ["--allow-root"] if os.geteuid() == 0 else []  # CI runs as root
    log = (home / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=_lab_env(home), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited:\n{(home / 'lab.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    _wait(browser, "jupyter lab to answer", up, timeout=60, every=0.5)
    yield f"{base}/lab/tree/{{}}?token={token}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _cells(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell")


def _output_text(driver, index: int) -> str:
    return _cells(driver)[index].find_element(By.CSS_SELECTOR, ".jp-Cell-outputArea").text


def _open_notebook(driver, lab_url: str, name: str, n_cells: int) -> None:
    driver.get(lab_url.format(name))
    _wait(driver, f"{name} to open", lambda: len(_cells(driver)) == n_cells, timeout=60)
    _wait(
        driver,
        "the kernel to be idle",
        lambda: (
            driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator")
            and driver.execute_script(
                "const e = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                "return e && e.getAttribute('data-status') === 'idle';"
            )
        ),
        timeout=60,
    )


def _menu(driver, menu: str, label: str) -> None:
    """Click ``menu`` in the menu bar, then its item ``label``, as a person would."""
    items = driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
    next(i for i in items if i.text.strip() == menu).click()

    def item():
        entries = driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item .lm-Menu-itemLabel")
        return next((e for e in entries if e.text.strip() == label), None)

    _wait(driver, f"{menu} > {label}", item, timeout=10).click()


def _run_cell(driver, index: int, timeout: float = 120) -> None:
    """Select cell ``index`` and run it (Shift+Enter), then wait until it has finished."""
    cell = _cells(driver)[index]
    _show(driver, cell)
    cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()
    webdriver.ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(
        Keys.SHIFT
    ).perform()
    prompt = cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt")
    _wait(
        driver,
        f"cell {index} to finish",
        lambda: re.fullmatch(r"\[\d+\]:", prompt.text.strip()),
        timeout=timeout,
    )


def _index(nb_path: Path, needle: str) -> int:
    nb = nbformat.read(nb_path, as_version=4)
    return next(i for i, c in enumerate(nb.cells) if needle in c.source)


def test_lab_runs_orientation_and_renders_the_first_check(browser, lab):
    path = COURSE_DIR / "00_orientation.ipynb"
    n_cells = len(nbformat.read(path, as_version=4).cells)
    stub, check = _index(path, "raise NotImplementedError()"), _index(path, "checks.check_")
    _open_notebook(browser, lab, path.name, n_cells)
    _menu(browser, "Run", "Run All Cells")

    failure = _wait(
        browser,
        "the first check's message",
        lambda: "CheckFailed" in _output_text(browser, check) and _output_text(browser, check),
        timeout=120,
    )
    assert failure.startswith("CheckFailed: `cosine_similarity` still raises NotImplementedError")
    assert "Traceback" not in failure, "a check failure should show its message, not a traceback"
    assert "emgeo profile 'cpu'" in _output_text(browser, _index(path, "emgeo.setup("))

    # The learner replaces the stub's `raise` line with an answer, and runs the two cells again.
    editor = _cells(browser)[stub].find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    answer = "return (a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T"
    actions = webdriver.ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.END)
    actions.key_up(Keys.CONTROL).key_down(Keys.SHIFT).send_keys(Keys.HOME).key_up(Keys.SHIFT)
    actions.send_keys(answer).perform()
    _run_cell(browser, stub)
    _run_cell(browser, check)
    passed = _output_text(browser, check)
    assert passed.startswith("✓ cosine_similarity passes"), passed


def _explorer_image(driver) -> str | None:
    images = driver.find_elements(By.CSS_SELECTOR, ".widget-interact .jp-OutputArea-output img")
    return images[0].get_attribute("src") if images else None


def test_lab_widget_explorer_redraws_when_a_slider_moves(browser, lab):
    path = COURSE_DIR / "01_toy_superposition.ipynb"
    n_cells = len(nbformat.read(path, as_version=4).cells)
    _open_notebook(browser, lab, path.name, n_cells)
    for needle in ("emgeo.setup(", "sweep = toy.train_sweep(", "plotting.toy_explorer(sweep)"):
        _run_cell(browser, _index(path, needle))

    first = _wait(browser, "the explorer's figure", lambda: _explorer_image(browser), timeout=60)
    sliders = browser.find_elements(By.CSS_SELECTOR, ".widget-interact .widget-slider")
    assert [s.find_element(By.CSS_SELECTOR, ".widget-label").text for s in sliders] == [
        "sparsity S",
        "decay",
    ]
    readout = sliders[0].find_element(By.CSS_SELECTOR, ".widget-readout")
    assert readout.text == "0.99"
    handle = sliders[0].find_element(By.CSS_SELECTOR, ".noUi-handle")
    _show(browser, handle)
    handle.click()
    handle.send_keys(Keys.ARROW_LEFT)

    _wait(browser, "the slider to move to 0.95", lambda: readout.text == "0.95", timeout=10)
    second = _wait(
        browser,
        "the figure to be redrawn",
        lambda: (src := _explorer_image(browser)) and src != first and src,
        timeout=30,
    )
    before, after = (_png(base64.b64decode(s.split(",", 1)[1])) for s in (first, second))
    assert _difference(before, after) > 0.5, "the redrawn figure should show another geometry"


# ---------------------------------------------------------------- the built site


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    """The site, built into a temporary folder and served on a free local port."""
    for module in ("sphinx", "myst_nb", "sphinx_book_theme", "jupyter_server_mathjax"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[site]')")
    from emgeo.course.site import build_site

    out = tmp_path_factory.mktemp("site") / "site"
    build_site(out)
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _mathjax_done(driver) -> bool:
    """MathJax has typeset every formula of the page and its fonts have loaded (it moves the
    layout while it works: nothing is photographed before)."""
    return driver.execute_script(
        "if (!(window.MathJax && MathJax.Hub && MathJax.Hub.queue)) return false;"
        "const q = MathJax.Hub.queue;"
        "const all = [...document.querySelectorAll('.math.notranslate')];"
        "return q.pending === 0 && q.running === 0 && all.length > 0"
        " && all.every(e => e.querySelector('.MathJax'))"
        " && document.fonts.status === 'loaded';"
    )


def _equation_in_source() -> str:
    """The display equation of the home page, as docs/index.md writes it."""
    from emgeo.course.site import DOCS_DIR

    return re.search(r"\$\$(.+?)\$\$", (DOCS_DIR / "index.md").read_text(), re.S).group(1)


def _typeset_beside(driver, element, tex: str):
    """Typeset ``tex`` with the page's MathJax in a new block right after ``element``."""
    driver.execute_script(
        "const d = document.createElement('div'); d.className = 'math reference';"
        "d.textContent = arguments[1]; arguments[0].after(d);"
        "MathJax.Hub.Queue(['Typeset', MathJax.Hub, d]);",
        element,
        f"\\[{tex.strip()}\\]",
    )
    _wait(driver, "the reference equation", lambda: _mathjax_done(driver), timeout=30)
    return driver.find_element(By.CSS_SELECTOR, "div.math.reference .MathJax_Display .math")


def test_site_typesets_the_math_of_its_pages(browser, site):
    browser.get(f"{site}/index.html")
    _wait(browser, "MathJax to typeset the home page", lambda: _mathjax_done(browser), timeout=30)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Math Processing Error" not in text
    assert "\\langle" not in text and "\\Delta" not in text, "raw TeX is showing"
    loaded = browser.execute_script(
        "return [...document.fonts].filter(f => f.status === 'loaded').map(f => f.family);"
    )
    assert any("STIX" in family for family in loaded), f"MathJax's fonts did not load: {loaded}"
    block = browser.find_element(By.CSS_SELECTOR, "div.math")
    _show(browser, block)
    page = _png(block.find_element(By.CSS_SELECTOR, ".MathJax_Display .math").screenshot_as_png)
    assert 150 < page.width < 700 and 15 < page.height < 80, (page.width, page.height)
    assert 0.03 < _dark_fraction(page) < 0.5, "the equation's box shows no typeset glyphs"

    # What the author wrote, typeset fresh in the same place, must look the same.
    reference = _png(_typeset_beside(browser, block, _equation_in_source()).screenshot_as_png)
    assert abs(reference.width - page.width) <= 2 and abs(reference.height - page.height) <= 2
    assert _difference(page, reference) < 4, "the equation does not look as its TeX typesets"

    browser.get(f"{site}/notebooks/02_neighbor_feature_drag.html")
    _wait(browser, "MathJax on notebook 02", lambda: _mathjax_done(browser), timeout=30)
    n_math, untypeset = browser.execute_script(
        "const all = [...document.querySelectorAll('.math.notranslate')];"
        "return [all.length, all.filter(e => !e.querySelector('.MathJax')).length];"
    )
    assert n_math > 20 and untypeset == 0, f"{untypeset} of {n_math} formulas are not typeset"


def _stored_figures(name: str) -> list:
    from emgeo.course.site import static_widget_outputs

    nb = static_widget_outputs(nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4))
    return [
        _png(base64.b64decode(o["data"]["image/png"]))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]


@pytest.mark.parametrize("name", ["00_orientation", "02_neighbor_feature_drag"])
def test_site_pages_show_the_notebooks_figures(browser, site, name):
    browser.get(f"{site}/notebooks/{name}.html")
    _wait(browser, f"MathJax on {name}", lambda: _mathjax_done(browser), timeout=30)
    expected = _stored_figures(name)
    images = browser.find_elements(By.CSS_SELECTOR, ".cell_output img")
    assert len(images) == len(expected) > 0
    for k, (image, figure) in enumerate(zip(images, expected, strict=True)):
        _show(browser, image)
        _wait(
            browser,
            f"figure {k} to load",
            lambda image=image: browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0;", image
            ),
            timeout=10,
        )
        shown = _png(image.screenshot_as_png)
        assert shown.width >= min(figure.width, 600) * 0.9, f"figure {k} is shown too small"
        diff = _difference(shown, figure)
        assert diff < 4, f"figure {k} on the page differs from the notebook's ({diff:.1f}/255)"
