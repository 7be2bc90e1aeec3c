"""The click explorer in a real browser: JupyterLab started here, headless Chromium clicks the map.

A notebook that draws :class:`xanes_lib.explorer.MapExplorer` with ipympl (``%matplotlib
widget``) is opened in JupyterLab and run; Chromium (driven by Selenium with the
distribution's chromedriver) clicks a pixel of the map. The kernel must report the new
selection and the spectrum panel of the canvas must change. Screenshots before and after go
to ``outputs/`` for a person to look at. Skipped, with the reason, where Chromium or its
driver is not installed (``apt install chromium chromium-driver`` on Debian).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no Chromium or chromedriver on this machine (Debian: apt install chromium chromium-driver); "
           "the browser test of the explorer needs both")

TARGET = (22, 40)            # the pixel the browser clicks (row, column), inside a particle
NOTEBOOK_CELLS = [
    "%matplotlib widget",
    """import json
import os
from xanes_lib import mapping
from xanes_lib.explorer import MapExplorer
from xanes_lib.simulation import SimulationConfig, simulate_stack
from xanes_lib.spectra import default_references
cfg = SimulationConfig(element="Ni", dose=3000.0).replace(phantom_shape=(48, 56),
                                                          phantom_pixel_size_nm=150.0)
stack, _ = simulate_stack(cfg, seed=4)
refs = default_references("Ni")
sample = mapping.significant_mask(stack, None, refs)
fit = mapping.fit_references(stack, None, refs, mask=sample.mask, mode="nonneg_sum_to_one")
ex = MapExplorer(stack, fit, refs, start=(0, 0), figsize=(10, 4.2))
ex.fig.canvas.header_visible = False
ex.fig.canvas.toolbar_visible = False
ex.fig.canvas.draw()
fx, fy = ex.fig.transFigure.inverted().transform(ex.ax_map.transData.transform(COLUMN_ROW))
with open("target.tmp", "w") as f:   # written whole, then renamed: the test never reads half a file
    json.dump({"fx": float(fx), "fy": float(fy)}, f)
os.replace("target.tmp", "target.json")
ex.fig.canvas""".replace("COLUMN_ROW", str(TARGET[::-1])),
]
#: Kernel code that writes the selection whole, then renames it (the test polls the file).
REPORT = ('import json, os\nwith open("selection.tmp", "w") as f:\n'
          '    json.dump([[s.start, s.stop] for s in ex.selection], f)\n'
          'os.replace("selection.tmp", "selection.json")')
#: JavaScript that runs REPORT in the notebook's kernel (the app is exposed by --expose-app-in-browser).
REQUEST = ("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({code: "
           + json.dumps(REPORT) + "});")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


@pytest.fixture
def jupyterlab(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "explorer.ipynb")
    port, token = _free_port(), "xanes-explorer-test"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    env.pop("MPLBACKEND", None)              # make sets agg; the notebook chooses ipympl itself
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.allow_root=True", "--LabApp.expose_app_in_browser=True"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def up():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return True
        except OSError:
            return server.poll() is not None and pytest.fail((tmp_path / "jupyterlab.log").read_text())

    try:
        _wait(up, 60, "JupyterLab to start")
        yield f"http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}", tmp_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_click_on_the_map_updates_the_spectrum(jupyterlab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, folder = jupyterlab
    out = ROOT / "outputs"
    out.mkdir(exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1800,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(url)
        _wait(lambda: driver.execute_script(
            "const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            "return !!(w && w.sessionContext && w.sessionContext.session"
            " && w.sessionContext.session.kernel);"),
            120, "the notebook and its kernel")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        div = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "div.jupyter-matplotlib-canvas-div"), 120,
                    "the ipympl figure")[0]
        _wait(lambda: (folder / "target.json").exists(), 60, "the notebook to finish")
        time.sleep(3)                                     # the first frame reaches the browser
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", div)
        before = div.screenshot_as_png
        (out / "explorer_browser_before.png").write_bytes(before)
        target = json.loads((folder / "target.json").read_text())
        canvas = div.find_elements(By.TAG_NAME, "canvas")[-1]      # the top canvas receives the mouse
        w, h = canvas.size["width"], canvas.size["height"]
        dx, dy = (target["fx"] - 0.5) * w, (0.5 - target["fy"]) * h     # offsets from the centre
        ActionChains(driver).move_to_element_with_offset(canvas, round(dx), round(dy)).click().perform()
        driver.execute_script(REQUEST)

        def moved():
            if not (folder / "selection.json").exists():
                driver.execute_script(REQUEST)
                return None
            sel = json.loads((folder / "selection.json").read_text())
            if sel == [[0, 1], [0, 1]]:
                (folder / "selection.json").unlink()
                return None
            return sel

        selection = _wait(moved, 60, "the kernel to receive the click")
        time.sleep(3)                                     # the redrawn frame reaches the browser
        after = div.screenshot_as_png
        (out / "explorer_browser.png").write_bytes(after)
    finally:
        driver.quit()
    (r0, r1), (c0, c1) = selection
    assert abs(r0 - TARGET[0]) <= 1 and abs(c0 - TARGET[1]) <= 1 and r1 - r0 == 1 and c1 - c0 == 1, selection
    _assert_spectrum_panel_changed(before, after)


def _assert_spectrum_panel_changed(before: bytes, after: bytes) -> None:
    """The right half of the figure (spectrum, fit, residual) differs between the two screenshots."""
    import io

    import numpy as np
    from matplotlib import image

    a, b = (image.imread(io.BytesIO(png), format="png") for png in (before, after))
    assert a.shape == b.shape
    half = a.shape[1] // 2
    changed = np.abs(a[:, half:, :3] - b[:, half:, :3]).max(axis=2) > 0.05
    assert changed.mean() > 0.002, f"the spectrum panel did not change ({changed.mean():.4%} of its pixels)"
