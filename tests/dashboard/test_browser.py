"""optuna-dashboard and the report in a real headless Chromium, on studies nanonas ran.

optuna-dashboard runs as its own process on a free port with --artifact-dir, as a user starts
it; Playwright drives Debian's chromium (Playwright's own browser download needs the network).
Without a browser the tests skip, saying why; with CI=true they fail instead (.ci/run installs
chromium with apt-get and playwright with the test extra).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from nanonas.dashboard import artifacts, plots
from nanonas.report import cli

_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not any(shutil.which(name) for name in _CHROMIUM):
        return "no chromium on PATH (apt-get install chromium)"
    if not shutil.which("optuna-dashboard"):
        return "no optuna-dashboard command"
    return None


# Session scope and autouse: checked before the session's studies are made, so a machine
# without a browser skips at once instead of training them first.
@pytest.fixture(scope="session", autouse=True)
def browser():
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so the browser tests must not skip")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    executable = next(shutil.which(n) for n in _CHROMIUM if shutil.which(n))
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _studies(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as answer:
        summaries = json.load(answer)["study_summaries"]
    return {s["study_name"]: s["study_id"] for s in summaries}


def _dashboard(made: dict):
    """optuna-dashboard on `made`'s storage and artifact folder; yields (base URL, study id)."""
    port = _free_port()
    where = artifacts.folder("", made["storage"])
    env = os.environ | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    process = subprocess.Popen(
        ["optuna-dashboard", made["storage"], "--host", "127.0.0.1", "--port", str(port)]
        + ["--artifact-dir", str(where)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ids = _studies(base)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"optuna-dashboard did not answer: {process.stderr.read()[-2000:]!r}"
                    ) from None
                time.sleep(0.3)
        yield base, ids[made["name"]]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def single_board(dash_single):
    yield from _dashboard(dash_single)


@pytest.fixture(scope="module")
def pareto_board(dash_pareto):
    yield from _dashboard(dash_pareto)


def _open(browser, url: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page, errors


def test_the_objectives_are_named(browser, pareto_board, single_board):
    base, study = pareto_board
    page, _ = _open(browser, f"{base}/dashboard/studies/{study}")
    # The Pareto front's axis pickers name the objectives (not "Objective 0/1").
    page.wait_for_selector("#graph-pareto-front .main-svg", timeout=30_000)
    page.wait_for_function("() => document.body.innerText.includes('Objective Y:')", timeout=30_000)
    body = page.inner_text("body")
    assert re.search(
        r"Objective X:[\s\u200b]*val_acc[\s\u200b]*Objective Y:[\s\u200b]*params", body
    ), body[:500]
    assert "Objective 0" not in body
    page.close()
    base, study = single_board
    page, _ = _open(browser, f"{base}/dashboard/studies/{study}")
    # The plot is drawn empty first and redrawn once the trials load: wait for the axis title.
    page.wait_for_function(
        "() => (document.querySelector('#plot-history')?.innerText || '').includes('val_acc')",
        timeout=30_000,
    )
    page.close()


def test_a_trial_page_shows_the_architecture_picture(browser, single_board, dash_single):
    base, study = single_board
    page, errors = _open(browser, f"{base}/dashboard/studies/{study}/trials?numbers=0")
    image = page.locator("img[src*='/artifacts/']").first
    image.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => [...document.images].some(i => i.src.includes('/artifacts/') && i.naturalWidth > 0)",
        timeout=30_000,
    )
    src = image.get_attribute("src")
    with urllib.request.urlopen(f"{base}{src}" if src.startswith("/") else src) as answer:
        svg = answer.read().decode()
    arch = dash_single["study"].trials[0].user_attrs["arch"]
    assert svg.startswith("<svg") and arch in svg  # trial 0's own picture
    assert "Trial 0" in page.inner_text("body")
    assert errors == []
    page.close()


def test_a_pareto_study_shows_the_learning_curves(browser, pareto_board):
    base, study = pareto_board
    page, errors = _open(browser, f"{base}/dashboard/studies/{study}")
    plot = page.locator("[id='user-defined-plot:nanonas-curves']")
    plot.locator(".main-svg").first.wait_for(timeout=30_000)
    assert plots.FIGURES["nanonas-curves"] in plot.inner_text()
    # As the run's last refresh saved it: its 4 trained trials, all complete (the fixture's
    # pruned trial was added after the run, with no refresh since), one trace per state.
    assert plot.locator("g.scatterlayer g.trace").count() == 1
    assert plot.locator("g.scatterlayer g.trace g.points path.point").count() == 8  # 4 x 2 epochs
    assert errors == []
    page.close()


def test_the_report_renders_its_plots_without_console_errors(browser, dash_pareto, tmp_path):
    out = tmp_path / "report"
    argv = ["--storage", dash_pareto["storage"], "--study-name", "pareto", "--out", str(out)]
    assert cli.main(argv) == 0
    page, errors = _open(browser, (out / "report.html").as_uri())
    page.wait_for_function(
        f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= "
        f"{len(plots.FIGURES)}",
        timeout=30_000,
    )
    for graph_id in plots.FIGURES:
        assert page.locator(f"[id='{graph_id}'] svg.main-svg").count() >= 1
    assert page.locator("img.arch").count() >= 1
    assert page.evaluate("() => [...document.images].every(i => i.naturalWidth > 0)")
    assert errors == []
    page.close()
