"""The HTML report renders in a real browser: headless Chromium (Debian's ``chromium``
package, which .ci/run installs) takes a screenshot that must show the page and its
figures. Skipped when no Chromium binary is found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _env import subprocess_env

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
               "chrome", "headless_shell")


def _browser() -> str | None:
    env = os.environ.get("VARPROP_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    path = _browser()
    if path is None:
        pytest.skip("no chromium binary (apt-get install chromium, or set VARPROP_CHROMIUM)")
    return path


def _screenshot(browser: str, page: Path, shot: Path, tmp: Path) -> None:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--disable-background-networking",
           f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,2400",
           f"--screenshot={shot}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.exists(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-1500:]}"


def test_the_html_report_renders_in_chromium(browser, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    env = subprocess_env()
    subprocess.run([sys.executable, "-m", "varprop", "report", "--analytic-only",
                    "-i", "he_normal", "zeros", "random_uniform", "-a", "relu", "tanh",
                    "--depth", "6", "--out", "report.html", "-q", "--format", "json"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    shot = tmp_path / "shot.png"
    _screenshot(browser, tmp_path / "report.html", shot, tmp_path)
    img = matplotlib.image.imread(str(shot))[..., :3]  # floats in [0, 1]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    # not blank: many colours and real contrast
    flat = (img.reshape(-1, 3) * 255).astype(np.uint8)
    colours = np.unique(flat[::7], axis=0)
    assert len(colours) > 200, f"only {len(colours)} colours: blank page?"
    assert img.std() > 0.05
    # the embedded figures decoded: the verdict heat map's saturated blue (vanish / symm
    # cells) and the initializers' line colours are on the page
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    blue = (b - r > 0.35) & (b > 0.3)
    orange = (r > 0.9) & (g > 0.4) & (g < 0.65) & (b < 0.2)  # he_normal's #ff7f0e
    assert blue.sum() > 2000, "the heat map is not on the page"
    assert orange.sum() > 200, "the variance curves are not on the page"
