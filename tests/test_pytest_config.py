"""The `slow` marker: registered in pytest.ini and put by tests/conftest.py on the browser test, the
whole-chain tests and the full-size parity tests (and on nothing else), so `-m "not slow"` is a
quick run while the README's command still runs everything."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOW = ["tests/webui/test_browser.py", "tests/model/test_parity.py", "tests/test_demo_bundled.py"]
FAST = ["tests/nn/test_ops.py", "tests/scripts/test_bench.py"]


def _collect(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_slow_marks_the_browser_chain_and_parity_tests_only():
    ids = [ln for ln in _collect("-m", "slow", *SLOW, *FAST).splitlines() if "::" in ln]
    files = {ln.split("::")[0] for ln in ids}
    assert files == set(SLOW), files
    quick = [ln for ln in _collect("-m", "not slow", *FAST).splitlines() if "::" in ln]
    assert {ln.split("::")[0] for ln in quick} == set(FAST)


def test_the_marker_is_registered():
    done = subprocess.run([sys.executable, "-m", "pytest", "--markers"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert "@pytest.mark.slow:" in done.stdout
