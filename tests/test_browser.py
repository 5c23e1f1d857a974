"""The course's widgets in a real browser: JupyterLab + headless Chromium driven by Playwright.

The dropout widget: opens stage 2 (the solution with its hidden blocks stripped, as a student would see it), runs
all cells, moves the p slider of the widget that draws the student's LockedDropout and checks that the drawn mask
changed. The generation widget: a small notebook with a tiny reference model, a prompt with an unknown word, the
temperature slider moved, Generate pressed. Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from deploy.hub.launch import free_port
from tests.notebook_tools import REPO, SOLUTIONS, kernel_env, stripped_copy

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def _state_dirs(root: Path) -> dict[str, str]:
    """Jupyter's, IPython's and matplotlib's state inside the test's temp dir; no news pop-up."""
    dirs = {name: root / name.lower() for name in
            ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR", "JUPYTERLAB_SETTINGS_DIR")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Render every cell (JupyterLab 4 otherwise only renders the cells in view), so widgets far down exist.
    tracker = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    return {k: str(v) for k, v in dirs.items()}


@contextlib.contextmanager
def _serve(work: Path, state: Path, data_dir: Path) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 over ``work`` (quick-mode kernels, data from ``data_dir``); yields its
    base URL with the token as query string, e.g. ``http://127.0.0.1:PORT/lab/tree/{name}?token=...``."""
    token = secrets.token_hex(16)
    port = free_port()
    env = kernel_env(quick=True)
    env.update(_state_dirs(state))
    env["HW4_DATA_DIR"] = str(data_dir)
    env.pop("JUPYTER_CONFIG_DIR", None)
    log_path = state / "jupyterlab.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield f"{base}/lab/tree/{{name}}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def jupyterlab(tmp_path, prepared_data):
    """A JupyterLab server on 127.0.0.1 serving a folder with the stage 2 notebook; yields (url, folder)."""
    work = tmp_path / "work"
    work.mkdir()
    stripped_copy(SOLUTIONS / "02_dropout.ipynb", work)
    with _serve(work, tmp_path / "state", prepared_data) as url:
        yield url.format(name="02_dropout.ipynb"), work


def _open_and_run_all(page: Any, url: str) -> None:
    """Opens the notebook at ``url`` and starts Run All Cells once its kernel answers."""
    page.goto(url)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    # The indicator can read idle before the kernel session is wired up; retry until a cell runs or waits in the
    # queue ([*]), not until it finishes ([1]): a slow first cell would otherwise run everything a second time.
    started = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|1)\]"))
    # Under load the kernel can be late, and JupyterLab then asks which kernel to start: accept it.
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    # A Run All that lands before the kernel is wired up is dropped silently; retrying after 10 s beats waiting.
    for _attempt in range(8):
        if accept.count():
            accept.first.click()
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        try:
            page.get_by_role("menuitem", name="Run", exact=True).click(timeout=15_000)
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=15_000)
            started.first.wait_for(timeout=10_000)
            return
        except Exception:
            continue
    pytest.fail("no cell ran after eight tries of Run All Cells")


@contextlib.contextmanager
def _notebook_page(url: str, failure_shot: str, width: int, timeout_ms: int) -> Iterator[Any]:
    """Headless Chromium on the notebook at ``url`` with every cell run; ``failure_shot`` is saved in ARTIFACTS if
    anything fails, and the browser always closes."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.set_default_timeout(timeout_ms)
            try:
                _open_and_run_all(page, url)
                yield page
            except Exception:
                page.screenshot(path=str(ARTIFACTS / failure_shot))
                raise
        finally:
            browser.close()


def test_dropout_widget_redraws_when_p_moves(jupyterlab, tmp_path):
    from playwright.sync_api import expect

    url, _ = jupyterlab
    start = time.perf_counter()
    with _notebook_page(url, "dropout_widget_failure.png", 1500, 120_000) as page:
        # Two widgets: the idea (cell 3) and the student's LockedDropout (after the check).
        images = page.locator(".widget-output img")
        expect(images).to_have_count(2, timeout=180_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        widget = page.locator(".widget-vbox").nth(1)
        widget.scroll_into_view_if_needed()
        image = widget.locator(".widget-output img")
        before = image.get_attribute("src")
        page.screenshot(path=str(ARTIFACTS / "dropout_widget_before.png"))
        handle = widget.locator(".widget-slider .noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        deadline = time.monotonic() + 60
        while image.get_attribute("src") == before:
            assert time.monotonic() < deadline, "the mask image did not change after moving the p slider"
            page.wait_for_timeout(250)
        readout = widget.locator(".widget-readout").first.inner_text()
        page.wait_for_timeout(500)
        widget.screenshot(path=str(ARTIFACTS / "dropout_widget_after.png"))
        page.screenshot(path=str(ARTIFACTS / "dropout_widget_page_after.png"))
        assert float(readout) > 0.5, f"the p slider reads {readout} after moving right from 0.5"
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert errors.count() == 0 or "Error" not in errors.first.inner_text()
    print(f"browser cycle: {time.perf_counter() - start:.1f} s")
    assert os.path.getsize(ARTIFACTS / "dropout_widget_after.png") > 10_000


GENERATOR_NOTEBOOK = """\
from hw4lib import data, viz
from hw4lib.components import load_components

C = load_components("solutions")
vocab = data.load_vocab("wikitext2")
model = C.LanguageModel(len(vocab), 16, 16, 1)  # untrained: the test checks the widget, not the text's quality
viz.generator_widget(model, vocab, C.generation, C.prediction, prompt="The game was")
"""


@pytest.fixture
def generator_lab(tmp_path, prepared_data):
    """A JupyterLab server over a folder with one small notebook: a tiny reference model and the widget."""
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(GENERATOR_NOTEBOOK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(work / "generate.ipynb"))
    with _serve(work, tmp_path / "state", prepared_data) as url:
        yield url.format(name="generate.ipynb")


def test_generator_widget_continues_a_prompt(generator_lab):
    from playwright.sync_api import expect

    start = time.perf_counter()
    with _notebook_page(generator_lab, "generator_widget_failure.png", 1400, 60_000) as page:
        print(f"notebook running after {time.perf_counter() - start:.1f} s")
        shown = page.locator(".widget-output .hw4-continuation")
        note = page.locator(".widget-output .hw4-unknown-note")
        chart = page.locator(".widget-output img")
        # the widget generates once when it appears (after the kernel has imported torch and built the model)
        expect(shown).to_have_count(1, timeout=60_000)
        expect(chart).to_have_count(1)
        assert note.count() == 0, "every word of 'The game was' is in WikiText-2's vocabulary"
        first_text, first_chart = shown.inner_text(), chart.get_attribute("src")
        assert first_text.startswith("The game was ") and len(first_text.split()) == 3 + 20

        prompt = page.get_by_role("textbox", name="prompt")
        prompt.fill("The qzxv game was")
        prompt.press("Tab")  # the value reaches the kernel on input already; leaving the box is what a user does
        handle = page.locator(".widget-slider .noUi-handle").first  # the first slider is the temperature
        handle.focus()
        for _ in range(6):
            handle.press("ArrowRight")
        expect(page.locator(".widget-readout").first).to_have_text("1.30", timeout=10_000)
        page.locator(".widget-button", has_text="Generate").click()

        # under load (two shared cores) a redraw can take seconds: wait for the final state, not the first one
        expect(note).to_have_text("not in the vocabulary, read as <unk>: 'qzxv'", timeout=30_000)
        text = shown.inner_text()
        assert text.startswith("The qzxv <unk> game was "), text
        continuation = shown.locator("b").inner_text()
        assert len(continuation.split()) == 20 and text.endswith(continuation)
        expect(chart).to_have_count(1, timeout=30_000)
        assert chart.get_attribute("src") != first_chart, "the next-word chart was not redrawn for the new prompt"
        page.wait_for_timeout(300)
        page.locator(".widget-vbox").first.screenshot(path=str(ARTIFACTS / "generator_widget.png"))
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert errors.count() == 0, errors.first.inner_text()
    elapsed = time.perf_counter() - start
    print(f"browser cycle: {elapsed:.1f} s")
    # Its duration is printed, not asserted: speed is measured on an idle machine, not in a test.
    assert os.path.getsize(ARTIFACTS / "generator_widget.png") > 10_000
