"""Benchmark: frame throughput through Kafka at realistic JPEG sizes (640x360, 1280x720, 1920x1080).

Frames are real ``Frame`` messages (JPEG at the decoder's quality setting in the binary envelope, as the
decoder publishes them), keyed by 4 camera ids over a 4-partition topic, produced with confluent-kafka (the
pipeline's producer settings: linger, idempotence) and consumed with aiokafka (the stages' consumer) from
the start of the topic. The broker is the embedded Tansu, or ``settings.bootstrap_servers`` when set.

The picture is a frame of ``../shared/data/faces/short_hamilton_clip.mp4`` when present (real content),
else scikit-image's astronaut; it is resized to each size (upscaled content compresses a little better than
native HD footage, so the large sizes are a lower bound on real message sizes).

Then the transport comparison the issue asks for, inline frames against a claim-check (the JPEG in the media
store under its frame key, a frame record without the JPEG on the topic, the reader fetching it back), each
side's CPU per frame (writer: encode the record, store the JPEG, produce until acknowledged; reader: fetch,
decode the record, read the JPEG back; the broker's and the S3 server's own processes apart), for the local
media directory (the one-box default) and an S3-protocol server (moto, the distributed default's protocol),
at 640x360, 1080p and 4K; and the frame path's per-frame JPEG and resize costs at each size.

``run(settings) -> str`` returns the markdown section for BENCHMARKS.md (``facestream bench kafka``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from agents.detector import decode_jpeg
from connectors.media import LocalMediaStore, MediaStore, S3MediaStore
from models.centerface import downscale, plan_input
from ops.broker import free_port
from pipeline.settings import Settings
from schemas.messages import Frame, frame_key_for
from schemas.topics import FRAMES

SIZES: tuple[tuple[int, int], ...] = ((640, 360), (1280, 720), (1920, 1080))
BYTES_PER_SIZE = 200 * 1024 * 1024  # data sent per size: bounds time and the in-memory broker's growth
MAX_FRAMES = 8000
PARTITIONS = 4
CAMERAS = 4
COMMAND = "facestream bench kafka"
CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "short_hamilton_clip.mp4"


@dataclass(frozen=True)
class Result:
    width: int
    height: int
    jpeg_bytes: int
    message_bytes: int
    frames: int
    produce_fps: float
    consume_fps: float

    @property
    def produce_mb_s(self) -> float:
        return self.produce_fps * self.message_bytes / 1e6

    @property
    def consume_mb_s(self) -> float:
        return self.consume_fps * self.message_bytes / 1e6


def source_picture() -> tuple[np.ndarray, str]:
    """A BGR picture to encode: a clip frame when the shared data is present, else the astronaut."""
    if CLIP.exists():
        capture = cv2.VideoCapture(str(CLIP))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
        ok, frame = capture.read()
        capture.release()
        if ok:
            return frame, f"frame 100 of {CLIP.name}"
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), "scikit-image astronaut"


def frame_message(picture: np.ndarray, width: int, height: int, quality: int) -> tuple[bytes, int]:
    """(encoded Frame message, JPEG size) for ``picture`` resized to width x height."""
    resized = cv2.resize(picture, (width, height), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    message = Frame(camera_id="cam-0", frame_no=0, timestamp=time.time(), width=width, height=height,
                    jpeg=jpeg.tobytes())
    return message.to_bytes(), len(jpeg)


def _create_topic(servers: str, topic: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    spec = NewTopic(topic, PARTITIONS, 1, config={"max.message.bytes": str(max_bytes)})
    for future in admin.create_topics([spec], operation_timeout=10).values():
        future.result()


def _produce(servers: str, topic: str, value: bytes, count: int, settings: Settings) -> float:
    """Produce ``count`` copies keyed round-robin by camera; seconds until every one is acknowledged."""
    producer = Producer({
        "bootstrap.servers": servers, "enable.idempotence": True, "linger.ms": settings.kafka.linger_ms,
        "message.max.bytes": settings.kafka.max_message_bytes, "compression.type": "none",
        "queue.buffering.max.kbytes": 512 * 1024,
    })
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    keys = [f"cam-{i}".encode() for i in range(CAMERAS)]
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=value, key=keys[i % CAMERAS], on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining or failures:
        raise RuntimeError(f"produce failed: {remaining} undelivered, errors {failures[:3]}")
    return elapsed


async def _consume(servers: str, topic: str, count: int, settings: Settings) -> float:
    """Read ``count`` messages from the start of every partition; seconds from the first fetch."""
    k = settings.kafka
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, max_partition_fetch_bytes=k.max_message_bytes,
        fetch_max_bytes=max(k.max_message_bytes, 52428800),
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        seen = 0
        start = time.perf_counter()
        deadline = start + 120
        while seen < count and time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            seen += sum(len(records) for records in batches.values())
        elapsed = time.perf_counter() - start
    finally:
        await consumer.stop()
    if seen < count:
        raise RuntimeError(f"consumed {seen} of {count} frames within 120 s")
    return elapsed


async def bench_size(servers: str, settings: Settings, picture: np.ndarray, width: int, height: int) -> Result:
    value, jpeg_bytes = frame_message(picture, width, height, settings.decoder.jpeg_quality)
    count = max(200, min(MAX_FRAMES, BYTES_PER_SIZE // len(value)))
    topic = f"bench-frames-{width}x{height}-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _create_topic, servers, topic, settings.kafka.max_message_bytes)
    produce_s = await loop.run_in_executor(None, _produce, servers, topic, value, count, settings)
    consume_s = await _consume(servers, topic, count, settings)
    AdminClient({"bootstrap.servers": servers}).delete_topics([topic])  # frees the in-memory broker
    return Result(width, height, jpeg_bytes, len(value), count, count / produce_s, count / consume_s)


TRANSPORT_SIZES: tuple[tuple[int, int], ...] = ((640, 360), (1920, 1080), (3840, 2160))
TRANSPORT_BYTES = 48 * 1024 * 1024  # JPEG bytes per size and transport: bounds time and the broker's memory
PATH_SIZES: tuple[tuple[int, int], ...] = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))
PATH_MIN_FACE = 40  # the 1080p camera target's smallest face: the detector input of the resize column
S3_ENV = {"AWS_ACCESS_KEY_ID": "facestream-bench", "AWS_SECRET_ACCESS_KEY": "facestream-bench",
          "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class Transport:
    """One way of moving frames, its CPU-ms per frame on each side (process CPU time)."""

    label: str
    width: int
    height: int
    frames: int
    record_bytes: int  # the frame record on the topic
    write_ms: float  # writer: record encode, JPEG into the store (claim-check), produce until acknowledged
    read_ms: float  # reader: fetch, record decode, JPEG from the store (claim-check)
    broker_ms: float
    store_ms: float  # the S3 server's own process (0 for the local directory: its cost is the writer's/reader's)
    clean_ms: float  # deleting the stored JPEG again (claim-check only: a topic's retention costs nothing)
    fps: float  # frames per wall second, written then read

    @property
    def total_ms(self) -> float:
        return self.write_ms + self.read_ms + self.broker_ms + self.store_ms + self.clean_ms


def _pid_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        import psutil
    except ImportError:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


@contextlib.contextmanager
def s3_server() -> Iterator[tuple[str, int] | None]:
    """moto's S3-protocol server on loopback, a process of its own: (endpoint, pid), or None without moto."""
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
    except ImportError:
        yield None
        return
    port = free_port()
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)  # boto3 reads its credentials from the environment
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto S3 server did not start") from None
                time.sleep(0.2)
        yield endpoint, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _write(servers: str, topic: str, jpeg: bytes, size: tuple[int, int], count: int, store: MediaStore | None,
           settings: Settings) -> int:
    """Publish ``count`` frames (inline, or claim-checked into ``store``); the record size."""
    producer = Producer({
        "bootstrap.servers": servers, "enable.idempotence": True, "linger.ms": settings.kafka.linger_ms,
        "message.max.bytes": settings.kafka.max_message_bytes, "compression.type": "none",
        "queue.buffering.max.kbytes": 512 * 1024,
    })
    record = b""
    for i in range(count):
        camera = f"cam-{i % CAMERAS}"
        frame = Frame(camera_id=camera, session=1, frame_no=i, timestamp=time.time(), width=size[0],
                      height=size[1], jpeg=b"" if store is not None else jpeg)
        if store is not None:  # stored before the record leaves, so a reader always finds it
            store.put(frame_key_for(camera, 1, i), jpeg, "image/jpeg")
        record = FRAMES.encode(frame)
        while True:
            try:
                producer.produce(topic, value=record, key=camera.encode())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("frames not acknowledged within 120 s")
    return len(record)


async def _read(servers: str, topic: str, count: int, store: MediaStore | None, settings: Settings) -> None:
    """Read ``count`` frames back, each with its JPEG (from the record, or from the store)."""
    k = settings.kafka
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                max_partition_fetch_bytes=k.max_message_bytes,
                                fetch_max_bytes=max(k.max_message_bytes, 52428800))
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        seen, deadline = 0, time.monotonic() + 120
        while seen < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=100)).values():
                for rec in records:
                    frame = FRAMES.decode(rec.value)
                    assert isinstance(frame, Frame)
                    jpeg = frame.jpeg if store is None else store.get(
                        frame_key_for(frame.camera_id, frame.session, frame.frame_no))
                    if not jpeg:
                        raise RuntimeError("a frame came without its JPEG")
                    seen += 1
    finally:
        await consumer.stop()
    if seen < count:
        raise RuntimeError(f"read {seen} of {count} frames within 120 s")


async def bench_transport(servers: str, broker_pid: int | None, settings: Settings, jpeg: bytes,
                          size: tuple[int, int], store: tuple[str, MediaStore, int | None] | None) -> Transport:
    """One transport at one frame size: inline (``store`` None) or claim-check into ``store`` (label, store,
    its server's pid)."""
    count = max(100, min(2000, TRANSPORT_BYTES // len(jpeg)))
    topic = f"bench-transport-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _create_topic, servers, topic, settings.kafka.max_message_bytes)
    media = store[1] if store else None
    store_pid = store[2] if store else None
    started, broker0, store0 = time.perf_counter(), _pid_cpu(broker_pid), _pid_cpu(store_pid)
    cpu0 = _own_cpu()
    record = _write(servers, topic, jpeg, size, count, media, settings)
    cpu1 = _own_cpu()
    await _read(servers, topic, count, media, settings)
    cpu2, wall = _own_cpu(), time.perf_counter() - started
    broker1, store1 = _pid_cpu(broker_pid), _pid_cpu(store_pid)
    clean = 0.0
    if media is not None:
        for i in range(count):
            media.delete(frame_key_for(f"cam-{i % CAMERAS}", 1, i))
        clean = _own_cpu() - cpu2 + _pid_cpu(store_pid) - store1
    AdminClient({"bootstrap.servers": servers}).delete_topics([topic])
    per = 1000 / count
    return Transport(store[0] if store else "inline (binary envelope)", size[0], size[1], count, record,
                     (cpu1 - cpu0) * per, (cpu2 - cpu1) * per, (broker1 - broker0) * per, (store1 - store0) * per,
                     clean * per, count / wall)


async def run_transports(servers: str, broker_pid: int | None, settings: Settings,
                         picture: np.ndarray) -> list[Transport]:
    results = []
    with tempfile.TemporaryDirectory(prefix="facestream-claimcheck-") as tmp, s3_server() as s3:
        stores: list[tuple[str, MediaStore, int | None] | None] = [
            None, ("claim-check, local media directory", LocalMediaStore(Path(tmp) / "media"), None)]
        if s3 is not None:
            import boto3

            endpoint, pid = s3
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-frames")
            stores.append(("claim-check, S3 (moto server)", S3MediaStore("s3://bench-frames/f", endpoint), pid))
        for width, height in TRANSPORT_SIZES:
            resized = cv2.resize(picture, (width, height), interpolation=cv2.INTER_CUBIC)
            ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, settings.decoder.jpeg_quality])
            assert ok
            for store in stores:
                results.append(await bench_transport(servers, broker_pid, settings, buf.tobytes(), (width, height),
                                                     store))
    return results


def _cpu_ms(fn: object, rounds: int) -> float:
    assert callable(fn)
    fn()
    start = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - start) / rounds * 1000


def frame_path(picture: np.ndarray, quality: int) -> list[str]:
    """Table rows: per frame size, the decoder's JPEG encode, the detector's decode (OpenCV's and the one it
    uses), and the resize to its input for faces from ``PATH_MIN_FACE`` px (one INTER_AREA and ``downscale``)."""
    return [_path_row(cv2.resize(picture, size, interpolation=cv2.INTER_CUBIC), quality) for size in PATH_SIZES]


def _path_row(image: np.ndarray, quality: int) -> str:
    height, width = image.shape[:2]
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = buf.tobytes()
    rounds = max(30, int(1e8 // (width * height)))
    plan = plan_input(height, width, 640, PATH_MIN_FACE)
    target = (plan.resized_w, plan.resized_h)
    encode = _cpu_ms(lambda: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality]), rounds)
    opencv = _cpu_ms(lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR), rounds)
    ours = _cpu_ms(lambda: decode_jpeg(data), rounds)
    direct = fast = "-"
    if target != (width, height):
        direct = f"{_cpu_ms(lambda: cv2.resize(image, target, interpolation=cv2.INTER_AREA), rounds):.2f}"
        fast = f"{_cpu_ms(lambda: downscale(image, *target), rounds):.2f}"
    return (f"| {width}x{height} | {len(data) / 1024:.0f} | {encode:.2f} | {opencv:.2f} | {ours:.2f} "
            f"| {target[0]}x{target[1]} | {direct} | {fast} |")


async def run_async(settings: Settings) -> tuple[list[Result], list[Transport], str, str]:
    """(results per size, transports per size, broker description, picture description)."""
    picture, source = source_picture()
    if settings.bootstrap_servers:
        servers = settings.bootstrap_servers
        results = [await bench_size(servers, settings, picture, w, h) for w, h in SIZES]
        return results, await run_transports(servers, None, settings, picture), f"Kafka at {servers}", source
    from ops.broker import EmbeddedBroker

    async with EmbeddedBroker() as broker:
        results = [await bench_size(broker.bootstrap_servers, settings, picture, w, h) for w, h in SIZES]
        transports = await run_transports(broker.bootstrap_servers, broker.pid, settings, picture)
    return results, transports, "embedded Tansu (memory storage, 127.0.0.1)", source


def run(settings: Settings) -> str:
    """Run the Kafka frame benchmark; returns the markdown section (first line is its ``##`` heading)."""
    started = time.perf_counter()
    results, transports, broker, source = asyncio.run(run_async(settings))
    path_rows = frame_path(source_picture()[0], settings.decoder.jpeg_quality)
    from ops.bench_profile import load_note

    lines = [
        "## Kafka frame throughput by JPEG size",
        "",
        (f"Command: `{COMMAND}` (ops/bench_kafka.py). Broker: {broker}. Machine: {platform.machine()}, "
        f"{load_note()}. Took {time.perf_counter() - started:.0f} s."),
        "",
        (f"One `Frame` message per frame (JPEG q{settings.decoder.jpeg_quality} of {source} in the binary "
        f"envelope, as the decoder publishes it), {CAMERAS} camera keys over {PARTITIONS} partitions. Produced with "
        f"confluent-kafka (idempotent, linger {settings.kafka.linger_ms} ms) until every message is acknowledged; "
        f"then consumed with aiokafka from the start of the topic. Producer and consumer run one after the "
        f"other in one process, so the rates are each side's ceiling on this machine, not a pipelined figure."),
        "",
        ("| frame | JPEG (KB) | message (KB) | frames | produce (frames/s) | produce (MB/s) | consume (frames/s) "
        "| consume (MB/s) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.width}x{r.height} | {r.jpeg_bytes / 1024:.0f} | {r.message_bytes / 1024:.0f} | {r.frames} | "
            f"{r.produce_fps:,.0f} | {r.produce_mb_s:.0f} | {r.consume_fps:,.0f} | {r.consume_mb_s:.0f} |"
        )
    slowest = min(min(r.produce_fps, r.consume_fps) for r in results)
    lines += [
        "",
        (f"At 8 fps per camera (the decoder's default), the slowest row carries about {slowest / 8:,.0f} cameras "
        f"per broker-client pair before Kafka becomes the bottleneck; detection (tens of ms per frame on CPU) "
        f"saturates long before that. Large frames need `max.message.bytes` on the topic and the clients' fetch "
        f"sizes raised (facestream sets both from `FACESTREAM_KAFKA_MAX_MESSAGE_BYTES`)."),
        "",
        "### Inline frames vs claim-check",
        "",
        ("The same frames moved two ways through the same broker: inline (the JPEG in the frame record) and "
         "claim-check (the JPEG put in the media store under its frame key before the record, a record without "
         "it on the topic, the reader getting the JPEG back from the store; deleting it again is the cost a "
         "topic's retention otherwise pays for nothing). CPU-ms per frame from process times: writer (record, "
         "store put, produce until acknowledged), reader (fetch, record decode, store get), the broker's and the "
         "S3 server's own processes."),
        "",
        ("| frame | transport | frames | record (KB) | writer | reader | broker | S3 server | delete | total "
         "CPU-ms per frame | frames/s (write then read) |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {t.width}x{t.height} | {t.label} | {t.frames} | {t.record_bytes / 1024:.1f} | {t.write_ms:.2f} "
          f"| {t.read_ms:.2f} | {t.broker_ms:.2f} | {t.store_ms:.2f} | {t.clean_ms:.2f} | **{t.total_ms:.2f}** "
          f"| {t.fps:,.0f} |" for t in transports],
        "",
        "### Frame path: JPEG and resize per frame",
        "",
        (f"CPU-ms per frame (process time, one frame at a time) of the work every frame costs outside the "
         f"models: the decoder's JPEG encode (OpenCV, q{settings.decoder.jpeg_quality}), the detector's one "
         f"decode (OpenCV's bundled libjpeg-turbo, and `agents.detector.decode_jpeg`: simplejpeg, the same "
         f"pixels), and the resize to the detector's input when faces from {PATH_MIN_FACE} px must be found "
         f"(one INTER_AREA, and `models.centerface.downscale`: halve, then the rest)."),
        "",
        "| frame | JPEG (KB) | encode | decode, OpenCV | decode, simplejpeg | detector input | resize, one "
        "INTER_AREA | resize, downscale |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
        *path_rows,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(Settings()))
