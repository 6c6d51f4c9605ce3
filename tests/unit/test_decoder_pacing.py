"""A file played as a camera keeps its frame rate: frames on absolute deadlines (late wake-ups made up, a stall
not caught up in a burst), and a clean end of the file starts the next pass at once, while a live source that
ends or fails (or a file that gives nothing) waits out the reconnect back-off. The decoder's real stream loop
runs on a fake clock with fake sources and producer: no broker, no real waiting."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agents.camera_health import StreamHealth
from agents.decoder import DecodedFrame, DecoderAgent, Pacer, SourceError, next_due
from pipeline.settings import Settings
from schemas.messages import CameraChanged, Frame

PERIOD = 0.04  # 25 frames/s


class FakeClock:
    """Monotonic time that moves only when slept on (by the amount asked, plus a set oversleep)."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 1000.0
        self.oversleep = oversleep
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.oversleep
        await asyncio.sleep(0)


class FakeSource:
    """A source giving ``frames`` frames, then its end (None) or, with ``fail``, a read error."""

    def __init__(self, frames: int, *, is_file: bool, fail: bool = False) -> None:
        self.frames = frames
        self.is_file = is_file
        self.total = frames if is_file else 0
        self.interval_s = PERIOD
        self.fail = fail
        self.index = -1

    def read(self) -> DecodedFrame | None:
        if self.index + 1 >= self.frames:
            if self.fail:
                raise SourceError("read timed out")
            return None
        self.index += 1
        return DecodedFrame(self.index, 0.0, 0.0, b"\xff\xd8", 64, 36)

    def close(self) -> None:
        pass


class Producer:
    """Every send acknowledged at once; records each frame with the fake clock's time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, Frame]] = []

    def send(self, topic: Any, key: str, frame: Frame) -> asyncio.Future[tuple[int, int]]:
        self.sent.append((self.clock.now, frame))
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        future.set_result((0, len(self.sent)))
        return future


class Enough(Exception):
    """Ends the stream loop once the test has seen the opens it needs."""


@pytest.fixture(scope="module")
def source_io() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


async def stream(sources: list[FakeSource], clock: FakeClock, source_io: ThreadPoolExecutor,
                 ) -> tuple[Producer, list[float]]:
    """Run the decoder's stream loop over ``sources`` (one per open); the frames sent and the clock's time
    at each open."""
    settings = Settings(decoder={"target_fps": 1 / PERIOD, "reconnect_min_s": 0.5, "reconnect_max_s": 30.0})
    producer = Producer(clock)
    agent = DecoderAgent(settings=settings, producer=producer, media=None, membership=None,  # type: ignore[arg-type]
                         source_io=source_io, clock=clock)
    opened: list[float] = []
    queue = iter(sources)

    async def open_source(url: str) -> FakeSource:
        opened.append(clock.now)
        try:
            return next(queue)
        except StopIteration:
            raise Enough from None

    agent._open = open_source  # type: ignore[assignment,method-assign]
    with pytest.raises(Enough):
        await agent._stream(CameraChanged(camera_id="cam", url="/media/lobby.mp4"), StreamHealth("cam", 3))
    return producer, opened


def test_deadlines_stay_on_the_grid_when_every_wake_up_is_late() -> None:
    t0, due, now = 0.0, 0.0, 0.0
    for n in range(1, 1001):
        now = due + 0.003 + 0.01 * (n % 3 == 0)  # every frame goes out 3 ms late, every third 13 ms late
        due = next_due(due, now, PERIOD)
        assert due == pytest.approx(t0 + n * PERIOD)
    # (the old rule, sleep(period - elapsed) after each frame, adds the lateness up: 46.3 s for these 1000)
    assert due == pytest.approx(40.0)


def test_a_stall_re_anchors_the_schedule_instead_of_bursting_to_catch_up() -> None:
    assert next_due(10.0, 10.03, PERIOD) == pytest.approx(10.04)  # on time: one period on
    assert next_due(10.0, 10.07, PERIOD) == pytest.approx(10.04)  # a period late at most: the next goes at once
    assert next_due(10.0, 11.0, PERIOD) == 11.0  # a one-second stall: the next goes now, then a period apart
    assert next_due(11.0, 11.0, PERIOD) == pytest.approx(11.04)


async def test_a_pacer_absorbs_oversleeping() -> None:
    clock = FakeClock(oversleep=0.004)
    pacer = Pacer(PERIOD, clock)
    sent = []
    for _ in range(250):
        await pacer.wait()
        sent.append(clock.now)
        pacer.sent()
    # 4 ms late on every wake-up, yet 250 frames span 249 periods: 25.0 frames/s, not 22.7
    assert sent[-1] - sent[0] == pytest.approx(249 * PERIOD + 0.004)


async def test_a_file_camera_plays_its_passes_back_to_back_at_its_frame_rate(source_io: ThreadPoolExecutor) -> None:
    clock = FakeClock(oversleep=0.002)
    producer, _ = await stream([FakeSource(5, is_file=True) for _ in range(3)], clock, source_io)
    times = [t for t, _ in producer.sent]
    assert len(times) == 15
    # one frame a period, across the passes too: no reconnect back-off between them, no drift
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == pytest.approx([PERIOD] * 14, abs=0.0021)
    assert times[-1] - times[0] == pytest.approx(14 * PERIOD + 0.002)
    assert all(s < 0.5 * 0.5 for s in clock.sleeps), clock.sleeps  # only pacing waits, never a back-off
    sessions = [frame.session for _, frame in producer.sent]
    passes = sorted(set(sessions))
    assert len(passes) == 3 and sessions == sorted(sessions)  # one stream session per pass, increasing
    assert [frame.frame_no for _, frame in producer.sent] == [0, 1, 2, 3, 4] * 3


@pytest.mark.parametrize("first", [FakeSource(5, is_file=False), FakeSource(5, is_file=False, fail=True),
                                   FakeSource(5, is_file=True, fail=True), FakeSource(0, is_file=True)],
                         ids=["live stream ended", "live read failed", "file read failed", "file with no frame"])
async def test_a_live_source_that_ends_or_fails_and_a_file_that_gives_nothing_back_off(
        first: FakeSource, source_io: ThreadPoolExecutor) -> None:
    clock = FakeClock()
    _, opened = await stream([first, FakeSource(1, is_file=True)], clock, source_io)
    assert len(opened) == 3
    # reconnect_min_s 0.5 with jitter: 0.25 to 0.5 s before the reopen (a file that gives no frame must not
    # reopen in a tight loop)
    assert 0.25 <= opened[1] - opened[0] - first.frames * PERIOD * first.is_file <= 0.5 + 1e-9
