"""The web page follows the gateway's `reconnect` event, in headless Chromium (Debian's
`chromium`, driven by Playwright) with its fake microphone, over two gateways on fake
services (tests/gateway/fakes.py) behind a TCP forwarder that plays the load balancer.

Tier 3 (a browser process), but quick: no model, no service process."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest
from conftest import Gateway, start_gateway, stop_gateway

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(90)]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",  # a synthetic tone: the fake STT hears speech
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PANEL = "document.querySelector('#panel-conversation')"


class Balancer:
    """A TCP forwarder to one backend port at a time: each new connection goes to `port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def gateways() -> AsyncIterator[tuple[Gateway, Gateway]]:
    pair = (await start_gateway(), await start_gateway())
    for g in pair:
        g.fakes.stt.final_after = 10**9  # one long utterance, until the stream half-closes
    yield pair
    for g in pair:
        await stop_gateway(g)


async def test_the_page_finishes_its_turn_then_moves_to_another_gateway(gateways):
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    playwright = pytest.importorskip("playwright.async_api")
    first, second = gateways
    balancer = Balancer(first.service.http_port)
    async with balancer as port, playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.click("#conv-start")
        await page.wait_for_function(f"{PANEL}.dataset.state === 'hearing you'", timeout=30_000)
        session = await page.evaluate(f"{PANEL}.dataset.session")
        balancer.port = second.service.http_port  # new connections reach the other replica
        # The page ends its utterance, the turn completes, then it leaves: the drain ends
        # long before its grace.
        await asyncio.wait_for(first.service.drain(60), 30)
        await page.wait_for_function(
            f"""() => {{ const p = {PANEL};
                return p.dataset.session && p.dataset.session !== {session!r}
                    && p.dataset.state === 'hearing you'; }}""",
            timeout=30_000,
        )
        panel = await page.evaluate(f"({{...{PANEL}.dataset}})")
        await page.click("#conv-stop")
        await browser.close()
    assert panel["reconnects"] == "1"
    assert panel["finals"] == "1" and panel["lastReason"] == "REASON_COMPLETED"
    assert int(panel["audioChunks"]) >= 1  # the reply of the turn it finished
    assert len(first.fakes.llm.requests) == 1 and not second.fakes.llm.requests
    assert not problems, problems
