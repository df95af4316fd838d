"""End to end in a real browser: `edtalk webui` in a subprocess, headless Chromium via Playwright.

Uses Debian's `chromium` (Playwright's own browser download is not available here). Skips only
outside CI when chromium or playwright is missing; in CI (env CI set) they must be installed.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import soundfile as sf

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOOPBACK = {"127.0.0.1", "localhost"}
STARTUP_SECONDS = 120  # Gradio's import alone takes seconds on a busy 2-core machine


def _require(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if exe is None:
        _require("no chromium browser on PATH (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require("playwright is not installed (pip install playwright)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_ckpt_dir, tmp_path_factory):
    """`edtalk webui` on a free loopback port with tiny random-weight checkpoints; its URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("webui-server") / "server.log"
    tmp = tmp_path_factory.mktemp("webui-tmp")  # the server's temporary folders go here
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", TMPDIR=str(tmp))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edtalk.cli", "webui", "--host", "127.0.0.1", "--port",
                                 str(port), "--checkpoint-dir", str(tiny_ckpt_dir), "--device", "cpu"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    # `kill` stops it cleanly: uploads and results are gone with it.
    assert list(tmp.glob("edtalk-webui-*")) == [], log_path.read_text()


def _wait_until_serving(url, proc, log_path):
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"edtalk webui exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"edtalk webui did not answer within {STARTUP_SECONDS} s:\n{log_path.read_text()}")


@pytest.fixture
def page(chromium, server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.set_default_timeout(90_000)  # generation on a busy CPU
        page.outside_requests = []

        def loopback_only(route):
            if urlparse(route.request.url).hostname in LOOPBACK:
                route.continue_()
            else:
                page.outside_requests.append(route.request.url)
                route.abort()

        page.route("**/*", loopback_only)
        page.goto(server, wait_until="domcontentloaded")
        page.locator("#generate").wait_for()
        yield page
        browser.close()


def _upload(page, box: str, path):
    page.locator(f"#{box} input[type=file]").set_input_files(str(path))


def test_generate_in_the_browser_then_reject_a_non_image(page, speech, not_an_image, tmp_path):
    _upload(page, "identity", EXAMPLES / "source.png")
    page.get_by_text("Identity: source.png (image) ✓").wait_for()
    _upload(page, "audio", speech)
    page.get_by_text("Audio: speech.wav (audio) ✓").wait_for()
    page.get_by_label("preset", exact=True).check()  # expression: a preset at intensity 1
    page.locator("#generate").click()

    seconds = sf.info(str(speech)).duration
    frames = int(seconds * 25)
    page.wait_for_function("() => { const v = document.querySelector('#result video');"
                           " return v && v.readyState >= 2 && isFinite(v.duration); }")
    duration = page.evaluate("document.querySelector('#result video').duration")
    assert duration == pytest.approx(seconds, abs=0.05)  # the audio's length, 25 fps
    played = page.evaluate("""async () => {
        const v = document.querySelector('#result video');
        v.muted = true; await v.play(); await new Promise(r => setTimeout(r, 400)); v.pause();
        return {time: v.currentTime, error: v.error && v.error.code, width: v.videoWidth};
    }""")
    assert played["error"] is None and played["time"] > 0 and played["width"] == 64
    assert _status(page.evaluate("document.querySelector('#result video').src")) == 200  # served to its page
    summary = page.locator("#summary").inner_text()
    assert summary.startswith(f"{frames} frames ({seconds:.2f} s at 25 fps), audio mode, edtalk model")
    page.screenshot(path=tmp_path / "1-result.png", full_page=True)

    page.locator("#identity button[aria-label='Clear']").click()
    _upload(page, "identity", not_an_image)
    message = "Identity: notes.png is not a readable image"
    page.locator(".toast-body", has_text=message).wait_for()
    assert page.locator("#upload-info").inner_text() == f"⚠️ {message}"
    assert page.locator("#identity input[type=file]").count() == 1  # the bad file was removed from the box
    page.wait_for_timeout(500)  # the toast fades in
    page.screenshot(path=tmp_path / "2-bad-upload.png", full_page=True)

    page.locator("#generate").click()  # no identity now: a message, not a stack trace
    page.locator(".toast-body", has_text="Identity: upload a face image").wait_for()
    assert "Traceback" not in page.content()
    assert page.outside_requests == []


def _status(url) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_only_the_private_upload_folder_is_served(server, tiny_ckpt_dir):
    for path in (tiny_ckpt_dir / "EDTalk.pt", EXAMPLES / "source.png", Path(__file__)):
        assert _status(f"{server}gradio_api/file={path}") == 403, path
