"""End to end in a real browser: `edtalk webui` on the bundled SynthTalk model in a subprocess, headless
Chromium via Playwright.

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

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUNDLED = REPO / "checkpoints" / "synthtalk"
FACE = EXAMPLES / "synthtalk_face.png"
LOOPBACK = {"127.0.0.1", "localhost"}
STARTUP_SECONDS = 120  # Gradio's import alone takes seconds on a busy 2-core machine
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


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
def server(tmp_path_factory):
    """`edtalk webui --checkpoint-dir checkpoints/synthtalk` on a free loopback port; its URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("webui-server") / "server.log"
    tmp = tmp_path_factory.mktemp("webui-tmp")  # the server's temporary folders go here
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", TMPDIR=str(tmp))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edtalk", "webui", "--host", "127.0.0.1", "--port", str(port),
                                 "--checkpoint-dir", str(BUNDLED), "--device", "cpu"],
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
    startup = log_path.read_text().splitlines()
    assert any(line.startswith(f"EDTalk web UI: {url} ") and "--share" in line for line in startup), startup
    assert not any("share=True" in line for line in startup)


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
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, server):
    """A fresh browser context (its own cookies: another user) on the page, loopback traffic only."""
    page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
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
    return page


@pytest.fixture
def page(browser, server):
    return open_page(browser, server)


def _upload(page, box: str, path) -> None:
    page.locator(f"#{box} input[type=file]").set_input_files(str(path))


def _upload_and_locate(page, box: str, path) -> str:
    """Upload into a box; the path the server stored it at."""
    with page.expect_response(lambda r: urlparse(r.url).path.endswith("/upload") and r.request.method == "POST") as answer:
        _upload(page, box, path)
    return answer.value.json()[0]


def _pick_preset(page, name: str = "happy"):
    page.locator("#exp-choice").get_by_label("preset", exact=True).check()
    page.locator("#preset input").wait_for()
    assert page.locator("#preset input").input_value() == name


def _generate(page, results_before: int = 0) -> str:
    """Click Generate, wait for the result to play; its URL."""
    page.locator("#generate").click()
    page.locator("#history .thumbnail-item").nth(results_before).wait_for()
    page.wait_for_function("() => { const v = document.querySelector('#result video');"
                           " return v && v.readyState >= 2 && isFinite(v.duration); }")
    return page.evaluate("document.querySelector('#result video').src")


def _frames_of(page, url, path: Path) -> np.ndarray:
    from edtalk.video import read_video

    response = page.request.get(url)  # with this browser's cookies
    assert response.status == 200
    path.write_bytes(response.body())
    return read_video(path)[0]


def _status(url) -> int:
    """The answer to a request without any cookie (someone who only knows the URL)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_page_names_the_model_and_uses_its_presets(page, synthtalk_speech, tmp_path):
    """Expression = happy at intensity 1 on the bundled model: the page's frames are the CLI's with
    --presets checkpoints/synthtalk/presets, and the notice says which model is loaded."""
    from edtalk.cli import main
    from edtalk.video import read_video

    notice = page.locator("#notice").inner_text()
    assert "SynthTalk model, 64×64, cartoon faces only" in notice and "synthtalk/presets" in notice
    _upload(page, "identity", FACE)
    page.get_by_text("Identity: synthtalk_face.png (image) ✓").wait_for()
    page.locator("#identity-image-preview img").wait_for()  # the upload is shown
    _upload(page, "audio", synthtalk_speech)
    page.get_by_text(f"Audio: {synthtalk_speech.name} (audio) ✓").wait_for()
    page.locator("#audio-audio-preview", has_text="0:01").wait_for()  # a player with the speech's 0.8 s
    page.get_by_text("Model and options").click()
    assert not page.locator("#crop input").is_checked()  # SynthTalk faces are aligned frames already
    _pick_preset(page, "happy")
    url = _generate(page)
    shown = _frames_of(page, url, tmp_path / "page.mp4")
    cli = tmp_path / "cli.mp4"
    assert main(["generate", "--checkpoint-dir", str(BUNDLED), "--presets", str(BUNDLED / "presets"), "--no-crop",
                 "--quiet", "--device", "cpu", "--source", str(FACE), "--audio", str(synthtalk_speech),
                 "--exp", "happy", "--out", str(cli)]) == 0
    expected = read_video(cli)[0]
    assert shown.shape == expected.shape == (20, 64, 64, 3)
    assert np.array_equal(shown, expected)
    assert page.outside_requests == []


def test_bad_uploads_are_messages_in_the_page(page, huge_image, short_speech, not_an_image, tmp_path):
    checks = [("identity", huge_image, "Identity: huge.png has too many pixels: 400 megapixels (at most 89)"),
              ("identity", not_an_image, "Identity: notes.png is not a readable image"),
              ("audio", short_speech, "Audio: short.wav is 0.10 s long; speech must last at least 0.4 s")]
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (21 * 2 ** 20))
    checks.append(("identity", big, "Identity: big.png is 21 MB; image uploads are limited to 20 MB"))
    for box, path, message in checks:
        _upload(page, box, path)
        page.locator(".toast-body", has_text=message).first.wait_for()
        page.wait_for_function("m => document.querySelector('#upload-info').innerText.includes(m)", arg=message)
        assert page.locator(f"#{box} input[type=file]").count() == 1  # the bad file left its box
    page.screenshot(path=tmp_path / "bad-uploads.png", full_page=True)
    page.locator("#generate").click()  # no identity now: a message, not a stack trace
    page.locator(".toast-body", has_text="Identity: upload a face image").wait_for()
    _upload(page, "identity", FACE)
    _upload(page, "audio", EXAMPLES / "synthtalk_speech.wav")
    page.locator("#pose-choice").get_by_label("from a video").check()  # chosen, but no video given
    page.locator("#generate").click()
    page.locator(".toast-body", has_text="Head pose: upload a pose video, or pick another pose source").wait_for()
    assert "Traceback" not in page.content() and "server log" not in page.content()


def test_history_and_files_belong_to_one_browser(browser, server, tmp_path):
    page = open_page(browser, server)
    uploaded = _upload_and_locate(page, "identity", FACE)
    page.locator("#examples .thumbnail-item").nth(1).click()  # own expression, head still: fills the form
    page.get_by_text("Example: own expression, head still").wait_for()
    first = _generate(page, 0)
    page.locator("#examples .thumbnail-item").nth(0).click()  # happy, pose from the speech
    page.get_by_text("Example: happy, pose from the speech").wait_for()
    second = _generate(page, 1)
    assert first != second and page.locator("#history .thumbnail-item").count() == 2
    assert page.evaluate("document.querySelector('#result video').duration") == pytest.approx(4.0, abs=0.05)
    page.screenshot(path=tmp_path / "history.png", full_page=True)
    other = open_page(browser, server)  # another visitor, who somehow learned the URLs
    file_url = f"{server}gradio_api/file={uploaded}"
    for url in (first, second, file_url):
        assert page.request.get(url).status == 200, url
        assert other.request.get(url).status == 404, url
        assert _status(url) == 404, url
    assert other.locator("#history .thumbnail-item").count() == 0  # each tab its own history


def test_only_the_private_upload_folder_is_served(server):
    for path in (BUNDLED / "EDTalk" / "config.json", EXAMPLES / "source.png", Path(__file__)):
        assert _status(f"{server}gradio_api/file={path}") == 403, path


def test_speech_length_in_the_summary(page, speech):
    _upload(page, "identity", FACE)
    _upload(page, "audio", speech)
    _generate(page)
    seconds = sf.info(str(speech)).duration
    frames = int(seconds * 25)
    duration = page.evaluate("document.querySelector('#result video').duration")
    assert duration == pytest.approx(seconds, abs=0.05)  # the audio's length, 25 fps
    played = page.evaluate("""async () => {
        const v = document.querySelector('#result video');
        v.muted = true; await v.play(); await new Promise(r => setTimeout(r, 400)); v.pause();
        return {time: v.currentTime, error: v.error && v.error.code, width: v.videoWidth};
    }""")
    assert played["error"] is None and played["time"] > 0 and played["width"] == 64
    summary = page.locator("#summary").inner_text()
    assert summary.startswith(f"{frames} frames ({seconds:.2f} s at 25 fps), audio mode, lip_pose model")
