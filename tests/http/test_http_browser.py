"""Tier 4: the web page in headless Chromium (Debian's `chromium`, driven by Playwright, no
browser download) with a fake microphone fed from a WAV file: a conversation runs end to
end, the transcript appears and reply audio is received and scheduled. Screenshots are saved
to artifacts/http/ (printed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "http"


@pytest.fixture(scope="module")
def microphone_wav(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question with silence around it: the page hears it once (%noloop), then quiet."""
    out = tmp_path_factory.mktemp("mic") / "mic.wav"
    subprocess.run(
        ["sox", str(speech_wav), "-r", "48000", "-c", "1", str(out), "pad", "0.5", "3"], check=True
    )
    return out


@pytest.fixture(scope="module")
def browser(microphone_wav: Path):
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


def test_a_spoken_conversation_in_the_page(stack, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"{stack.base}/")
    page.click("#conv-start")
    panel = "#panel-conversation"
    page.wait_for_function(
        f"""() => {{ const p = document.querySelector('{panel}');
            return Number(p.dataset.finals) >= 1 && Number(p.dataset.audioChunks) >= 1
                && Number(p.dataset.turnsEnded) >= 1; }}""",
        timeout=150_000,
    )
    transcript = page.inner_text("#conv-transcript")
    assert "weather" in transcript.lower()
    assert page.locator("#conv-reply li").count() >= 1
    assert int(page.get_attribute(panel, "data-audio-bytes")) > 3200
    assert page.locator("#conv-latency tr").count() >= 4
    shot = ARTIFACTS / "conversation.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    page.click("#tab-status")
    page.wait_for_function(
        "() => document.querySelectorAll('#status-table tbody tr').length == 4"
        " && document.querySelector('#status-stages tr')",
        timeout=20_000,
    )
    assert page.locator("#status-table .health-SERVING").count() == 4
    status_shot = ARTIFACTS / "status.png"
    page.screenshot(path=str(status_shot), full_page=True)
    print(f"screenshot: {status_shot}")
    page.click("#tab-conversation")
    page.click("#conv-stop")
    assert not problems, problems
    context.close()
