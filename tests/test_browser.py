"""The dropout widget in a real browser: JupyterLab + headless Chromium driven by Playwright.

Opens stage 2 (the solution with its hidden blocks stripped, as a student would see it), runs all cells, moves
the p slider of the widget that draws the student's LockedDropout and checks that the drawn mask changed.
Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.notebook_tools import REPO, SOLUTIONS, kernel_env, stripped_copy

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture
def jupyterlab(tmp_path, prepared_data):
    """A JupyterLab server on 127.0.0.1 serving a folder with the stage 2 notebook; yields (url, folder)."""
    work = tmp_path / "work"
    work.mkdir()
    stripped_copy(SOLUTIONS / "02_dropout.ipynb", work)
    token = secrets.token_hex(16)
    port = _free_port()
    env = kernel_env(quick=True)
    env.update(_state_dirs(tmp_path / "state"))
    env["HW4_DATA_DIR"] = str(prepared_data)
    env.pop("JUPYTER_CONFIG_DIR", None)
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 (closed below)
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
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.3)
        yield f"{base}/lab/tree/02_dropout.ipynb?token={token}", work
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_dropout_widget_redraws_when_p_moves(jupyterlab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, _ = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    start = time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
            # The indicator can read idle before the kernel session is wired up; retry until a cell runs.
            executed = page.locator(".jp-InputPrompt", has_text="[1]")
            # Under load the kernel can be late, and JupyterLab then asks which kernel to start: accept it.
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            for _attempt in range(6):
                if accept.count():
                    accept.first.click()
                    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
                try:
                    page.get_by_role("menuitem", name="Run", exact=True).click(timeout=15_000)
                    page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=15_000)
                    executed.first.wait_for(timeout=20_000)
                    break
                except Exception:
                    continue
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
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "dropout_widget_failure.png"))
            raise
        finally:
            browser.close()
    print(f"browser cycle: {time.perf_counter() - start:.1f} s")
    assert os.path.getsize(ARTIFACTS / "dropout_widget_after.png") > 10_000
