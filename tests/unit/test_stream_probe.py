"""The asyncio probe run before a network camera's blocking open: a server that never answers is given up
within the timeout; any RTSP or HTTP answer (whatever its status) passes; anything else is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from connectors.stream_probe import ProbeError, probe_stream, probed
from tests.servers import Tarpit


@contextlib.asynccontextmanager
async def answering(first_line: bytes) -> AsyncIterator[int]:
    """A TCP server on loopback that reads a request and answers ``first_line``; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(first_line + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_tarpit_is_given_up_within_the_timeout() -> None:
    async with Tarpit().serving() as tarpit:
        for scheme in ("rtsp", "http"):
            started = asyncio.get_running_loop().time()
            with pytest.raises(ProbeError, match=r"no answer within 0\.3 s"):
                await probe_stream(f"{scheme}://user:pw@127.0.0.1:{tarpit.port}/live", 0.3)
            assert asyncio.get_running_loop().time() - started < 5
        assert tarpit.accepted == 2


async def test_any_rtsp_or_http_answer_passes_and_other_answers_do_not() -> None:
    async with answering(b"RTSP/1.0 401 Unauthorized") as port:
        await probe_stream(f"rtsp://127.0.0.1:{port}/live", 2)
    async with answering(b"HTTP/1.1 200 OK") as port:
        await probe_stream(f"http://localhost:{port}/mjpeg?x=1", 2)  # ::1 refused, then 127.0.0.1
    async with answering(b"SSH-2.0-OpenSSH_9.2") as port:
        with pytest.raises(ProbeError, match="not an RTSP server"):
            await probe_stream(f"rtsp://127.0.0.1:{port}/", 2)


async def test_a_closed_port_fails_at_once() -> None:
    async with answering(b"HTTP/1.1 200 OK") as port:
        pass
    with pytest.raises(ProbeError, match="cannot connect"):
        await probe_stream(f"http://127.0.0.1:{port}/", 2)
    assert probed("rtsps://h/x") and probed("HTTPS://h/") and not probed("/videos/a.mp4") and not probed("0")
