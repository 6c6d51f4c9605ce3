"""The one settings tree. Only this module reads the environment.

Every leaf is settable as ``FACESTREAM_<SECTION>_<NAME>`` (for example ``FACESTREAM_API_PORT``,
``FACESTREAM_KAFKA_TOPIC_PREFIX``), top-level fields as ``FACESTREAM_<NAME>`` (``FACESTREAM_DATA_DIR``,
``FACESTREAM_BOOTSTRAP_SERVERS``), and on the command line as ``--section-name`` (``--api-port``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import ModelSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    topic_prefix: str = Field("facestream.", description="Prefix of every topic and consumer group name.")
    partitions: int = Field(4, ge=1, description="Partitions per topic: the ceiling on a stage's parallelism.")
    replication_factor: int = Field(1, ge=1, description="Replicas per topic (1 on the embedded broker).")
    retention_ms: int = Field(24 * 3600 * 1000, description="Retention of every topic but frames.")
    frames_retention_ms: int = Field(3600 * 1000, description="Retention of the frames topic.")
    max_message_bytes: int = Field(8 * 1024 * 1024, description="Largest message (a full-resolution JPEG frame).")
    session_timeout_ms: int = Field(6000, ge=1000, description="Consumer group session timeout; short, as a join waits half of it.")
    heartbeat_interval_ms: int = Field(1000, ge=100, description="Consumer heartbeat interval.")
    max_batch: int = Field(16, ge=1, description="Most messages a stage takes from the broker at once.")
    linger_ms: int = Field(0, ge=0, description="Producer linger: latency traded for batching (0: send at once; what queues while a request is in flight is still batched; on the embedded broker an acknowledgement took ~1 ms at 0 and ~4 ms at 2).")
    fetch_max_wait_ms: int = Field(
        20, ge=0, le=10000,
        description="Longest a consumer fetch waits for data on the broker (every hop pays up to this when idle).")
    table_fetch_max_wait_ms: int = Field(
        200, ge=0, le=10000,
        description="Fetch wait of the in-process tables that follow rarely changing topics (cameras, camera health, the matcher's gallery): a change reaches them up to this much later, and their idle long polls cost the broker and the process less CPU than at fetch_max_wait_ms (every consumer polls once per wait while idle).")
    status_retention_ms: int = Field(3600 * 1000, description="Retention of the camera-status topic.")
    commit_interval_ms: int = Field(
        200, ge=0, le=10000,
        description="The spine's stages (detector, extractor, matcher: outputs with deterministic ids) commit their input offsets at most this often, always after their outputs are acknowledged (0: after every batch, as every other stage does). A live detector takes one frame per batch, so committing each cost a broker round trip per frame; offsets not yet committed go with a later batch, after a quiet fetch or at a stop. A crash or a rebalance replays up to this much more input; consumers drop the duplicates.")


class DecoderSettings(_Section):
    target_fps: float = Field(8.0, gt=0, description="Frames per second sampled from each source.")
    max_width: int = Field(3840, ge=64, description="Frames wider than this are downscaled before publishing (detection then misses faces under models.detector_min_face * source width / max_width pixels at the source).")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of published frames.")
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay of a live stream (doubled per failure, with jitter).")
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the reconnect back-off for live streams.")
    open_timeout_s: float = Field(10.0, gt=0, description="RTSP/HTTP sources: longest wait to open the stream.")
    read_timeout_s: float = Field(10.0, gt=0, description="RTSP/HTTP sources: longest wait for a frame before reconnecting.")
    source_threads: int = Field(32, ge=1, le=1024, description="Threads of a decoder process's own pool for blocking source I/O (stream opens and reads, file and media-store reads, camera URL checks), separate from inference and the API: a source that hangs holds one thread for at most open_timeout_s / read_timeout_s and nothing else waits for it. Size it to the live cameras a decoder owns plus parallel_jobs; beyond that, sources take turns.")
    failed_after: int = Field(3, ge=1, description="Consecutive failed opens after which a camera shows `failed` (it keeps retrying).")
    live_max_in_flight: int = Field(16, ge=1, description="Live cameras: frames sent but not yet acknowledged by the broker; frames beyond are dropped (counted).")
    status_interval_s: float = Field(2.0, gt=0, description="How often decoders and detectors report camera health.")
    parallel_jobs: int = Field(4, ge=1, description="Video files one decoder processes at once.")
    max_in_flight: int = Field(256, ge=8, description="Offline files: frames published but not yet detected (back-pressure).")


class DetectorSettings(_Section):
    best_face_mode: Literal["overall", "realtime"] = Field("overall", description="FindFace best-face mode.")
    realtime_interval_s: float = Field(2.0, gt=0, description="realtime mode: one best face per track per interval.")
    realtime_post_first: bool = Field(True, description="realtime mode: post the first face of a track at once.")
    live_max_age_s: float = Field(1.0, gt=0, description="Live frames that could not be posted within this many seconds of their capture (their age when the detector takes them plus the analysis of their batch) are skipped, the oldest first (counted as dropped: detector_behind), so alerts stay current when detection falls behind.")
    live_target_age_s: float = Field(0.25, gt=0, description="Live cameras: when the frames the detector takes are older than this (capture to the start of their analysis), it detects fewer of its live cameras' frames (their detection interval grows by 0.05 s steps, up to live_max_detect_interval_s; it shrinks back once they are younger than half of this): every frame is still tracked and alerts stay current, a new face is found up to one interval later. Offline files are never stretched.")
    live_max_detect_interval_s: float = Field(0.5, ge=0, description="Live cameras: the longest detection interval live_target_age_s may stretch to (0.5 s: an 8 fps camera detected one frame in four); at or below detect_interval_s, no stretching.")
    live_max_batch: int = Field(1, ge=1, description="Most frames a detector analyses in one batch while it has live cameras (their faces are posted when the whole batch is analysed; on CPU two due frames of one batch run at once, models.concurrent_runs, but at four 1080p cameras batches of 4 kept up no more reliably and raised the first-face latency, BENCHMARKS.md \"Speed on CPU\"; raise it on a GPU); offline files alone use kafka.max_batch.")
    track_timeout_s: float = Field(1.0, gt=0, description="A track ends after this long without a detection.")
    track_iou: float = Field(0.3, gt=0, lt=1, description="Minimum IoU to continue a track.")
    min_face_size: int = Field(40, ge=1, description="Faces narrower than this (pixels) are ignored.")
    min_quality: float = Field(0.25, ge=0, le=1, description="Faces below this quality are not posted.")
    max_track_s: float = Field(30.0, gt=0, description="overall mode: a long track still posts after this long.")
    chip_encoding: Literal["bgr", "jpeg"] = Field("bgr", description="How a face's aligned chip travels to the extractor: raw BGR pixels (67.5 KB, no encode or decode, lossless) or JPEG q95 (~8 KB, for thin links).")
    track_faces: int = Field(10, ge=1, description="Best faces (by quality) of a track that its identity decision uses: their descriptors' quality-weighted mean is matched.")
    detect_interval_s: float = Field(0.1, ge=0, description="Detect every k-th frame of a camera, k from its frame rate: a frame is detected when this long (less 10 %) has passed since the camera's last detected frame (0.1 s: a 30 or 25 fps source one frame in three, 8 fps every frame; 0: every frame). Between detections the tracker predicts its faces' boxes by a constant-velocity motion model and the next detection re-anchors them; a camera's first frame and every shot cut are always detected. Accuracy and speed per value: BENCHMARKS.md (detection scheduling).")
    cut_threshold: float = Field(0.3, gt=0, le=1, description="Colour-histogram distance between consecutive frames above which a shot cut ends every track (1: never).")


class MatcherSettings(_Section):
    threshold: float = Field(0.4, ge=0, le=1, description="Match threshold in confidence units, applied to a track's decision and to /v1/verify and /v1/search (calibration in models/faces.py).")
    ignore_unmatched: bool = Field(False, description="Drop unmatched faces instead of emitting events.")


class ApiSettings(_Section):
    host: str = Field("127.0.0.1", description="Query API listen address.")
    port: int = Field(8080, ge=0, le=65535, description="Query API port (0 picks a free one).")
    admin_token: SecretStr | None = Field(None, description="A fixed admin token for automation.")
    admin_password: SecretStr | None = Field(None, description="Password of the built-in admin user, applied at every start (it replaces one changed through the API). Unset: at the first start a random one is generated and logged once. A known default (admin, password, ...) or one under 8 characters is refused unless the API binds to loopback.")
    max_upload_bytes: int = Field(20 * 1024 * 1024, description="Largest image upload.")
    max_video_bytes: int = Field(512 * 1024 * 1024, description="Largest video upload.")
    max_image_pixels: int = Field(40_000_000, description="Largest decoded image, in pixels.")
    enrol_min_quality: float = Field(0.5, ge=0, le=1, description="Dossier photos whose face quality is below this are refused.")
    detection_ttl_s: float = Field(3600.0, gt=0, le=30 * 86400, description="How long faces found by POST /v1/detect stay usable as detection:<id> references (their photo is kept as long).")
    url_allow_private: bool = Field(False, description="Webhook, camera and Telegram Bot API URLs may target loopback, private and link-local addresses (off: only public ones). Checked by the API when a URL is stored and again at use: by the decoder before every camera open and by the webhook and Telegram senders at every connection, so set it alike on every role.")
    media_root: Path | None = Field(None, description="Local video files usable as camera sources must lie under this directory (unset: no local files); checked by the API and by the decoder before every open.")
    video_url_allow_private: bool = Field(False, description="POST /v1/videos/from-url may fetch from loopback, private and link-local addresses (off: only public ones; the address is checked as the connection is made).")
    public_url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s/]+(/[^\s]*)?$", description="Base URL integrators reach the API at (e.g. https://faces.example.com); webhook payloads carry absolute media URLs under it. Unset: http://<api.host>:<api.port>.")
    access_token_ttl_s: float = Field(900.0, ge=1, le=7 * 86400, description="Lifetime of an access token from POST /v1/auth/login or /v1/auth/refresh; after it the token answers 401 and an open websocket on it closes.")
    refresh_token_ttl_s: float = Field(14 * 86400.0, ge=60, le=365 * 86400, description="Lifetime of a refresh token (POST /v1/auth/refresh exchanges it, once, for a new access and refresh token pair); a session unused this long ends.")
    media_url_ttl_s: float = Field(600.0, ge=1, le=7 * 86400, description="Lifetime of the signed media URLs (thumbnails, frames, dossier photos) the API returns; an expired or altered one answers 403.")
    media_url_secret: SecretStr | None = Field(None, description="Key that signs media URLs; every API replica must share it. Unset: one is generated at the first start and kept in the SQL store (shared by replicas on one database).")
    ws_auth_recheck_s: float = Field(5.0, gt=0, le=3600, description="How often an open websocket re-checks its token (a revocation on this replica closes it at once; on another replica within this long).")
    login_window_s: float = Field(300.0, gt=0, le=86400, description="Window over which failed logins are counted for throttling.")
    login_max_failures_user: int = Field(5, ge=1, le=100_000, description="Failed logins for one user name within api.login_window_s after which its logins answer 429 (Retry-After) until the window frees.")
    login_max_failures_address: int = Field(20, ge=1, le=100_000, description="Failed logins from one client address within api.login_window_s after which its logins answer 429 (Retry-After) until the window frees.")
    contract_checks: Literal["log", "fail"] = Field("log", description="An answer whose status its operation does not declare in the OpenAPI document: `log` it (and count it in facestream_api_contract_violations_total) or also `fail` it with a 500 (tests).")

    def media_url(self, key: str) -> str:
        """The absolute URL of a stored image (``/v1/media/<key>`` under ``public_url``)."""
        base = (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
        return f"{base}/v1/media/{quote(key, safe='/:')}"


class StoreSettings(_Section):
    sql_url: str | None = Field(None, description="PostgreSQL URL; unset means a SQLite file in data_dir.")
    milvus_uri: str | None = Field(None, description="Milvus server URI; unset means a Milvus Lite file in data_dir.")
    media_s3_url: str | None = Field(None, description="S3 bucket URL (s3://bucket/prefix); unset means data_dir/media.")
    media_s3_endpoint: str | None = Field(None, description="S3-compatible endpoint (MinIO).")
    retention_matched_days: float = Field(30, gt=0, description="Matched events older than this are purged.")
    retention_unmatched_days: float = Field(7, gt=0, description="Unmatched events older than this are purged.")
    retention_frames_days: float = Field(3, gt=0, description="Full frames older than this are purged.")


class MetricsSettings(_Section):
    port: int = Field(0, ge=0, le=65535, description="Prometheus port of a single-role process (0: none; `up` serves /metrics on the API).")


class EpisodeSettings(_Section):
    threshold: float = Field(0.9, ge=0, le=1, description="Episode threshold in confidence units (models.faces.confidence of the cosine of two events' track descriptors): an event at least this similar to an open episode's first, best or last event joins it (matched events join their dossier's episode regardless). Two events are compared with each other, not with a dossier photo, so it must be at least matcher.threshold; derived by `facestream bench calibration` (BENCHMARKS.md).")
    search_interval_s: float = Field(60.0, gt=0, description="An event joins an episode whose last event is at most this old (event time).")
    max_duration_s: float = Field(300.0, gt=0, description="An episode closes this long after its first event.")
    event_timeout_s: float = Field(30.0, gt=0, description="An episode closes after this long without a new event.")
    video_idle_s: float = Field(120.0, gt=0, description="Offline videos: open episodes close after this long (wall clock) without events and without the end marker.")


class DedupSettings(_Section):
    window_s: float = Field(30.0, gt=0, description="Deduplication window (event time), per camera group.")
    threshold: float = Field(0.9, ge=0, le=1, description="Unmatched events whose track descriptors are at least this similar (confidence units) are the same person and fold into one. Event against event, like episodes.threshold: at least matcher.threshold; derived by `facestream bench calibration` (BENCHMARKS.md).")
    offline: bool = Field(True, description="Deduplicate events of offline videos (events with a video id).")
    live: bool = Field(False, description="Deduplicate events of live cameras.")


class CounterSettings(_Section):
    refresh_s: float = Field(5.0, gt=0, description="How often the counters stage re-reads counter definitions from the store.")
    lateness_s: float = Field(5.0, ge=0, description="A window is final once event time (or the wall clock, for live cameras) is this far past its end.")


class WebhookSettings(_Section):
    batch_max: int = Field(50, ge=1, description="Most items in one delivery (a JSON array).")
    batch_linger_s: float = Field(1.0, ge=0, description="How long a delivery waits to fill a batch.")
    queue_max: int = Field(10000, ge=1, description="Items queued per webhook; beyond it the oldest are dead-lettered.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one delivery attempt.")
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay; doubled on each attempt.")
    backoff_max_s: float = Field(100.0, gt=0, description="Cap of the retry delay.")
    max_attempts: int = Field(10, ge=1, description="Attempts before a delivery is dead-lettered.")
    refresh_s: float = Field(5.0, gt=0, description="How often the webhooks stage re-reads webhook definitions from the store.")


class TelegramSettings(_Section):
    bot_token: SecretStr | None = Field(None, description="Telegram bot token; unset disables the Telegram sink.")
    api_base_url: str = Field("https://api.telegram.org", description="Bot API base URL (a local Bot API server, or a fake one in tests); http(s) under the URL policy (api.url_allow_private for an internal one).")
    cooldown_s: float = Field(600.0, ge=0, description="At most one message per dossier (or unmatched person) and chat per this long.")
    max_attempts: int = Field(5, ge=1, description="Attempts per message before it is dropped (and logged).")
    timeout_s: float = Field(20.0, gt=0, description="HTTP timeout of one Bot API call.")
    refresh_s: float = Field(5.0, gt=0, description="How often the Telegram stage re-reads notification rules from the store.")


class VideoLivenessSettings(_Section):
    frames: int = Field(30, ge=1, le=300, description="POST /v1/video-liveness: frames sampled from a clip (the `frames` parameter's default).")
    max_fps: float = Field(60.0, gt=0, description="Clips above this frame rate are refused (400).")
    max_width: int = Field(1920, ge=16, description="Clips wider than this are refused (400).")
    max_height: int = Field(1080, ge=16, description="Clips taller than this are refused (400).")
    max_length_s: float = Field(60.0, gt=0, description="Clips longer than this are refused (400).")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body (413 beyond).")
    min_frames: int = Field(10, ge=1, description="Frames that must decode, and frames that must hold a usable face (else 400 / 406).")
    multiple_faces: Literal["best", "biggest", "refuse"] = Field("best", description="Several faces in a frame: score the best-quality one, the biggest, or refuse the clip (406).")
    secondary_face_ratio: float = Field(0.5, ge=0, le=1, description="Faces narrower than this fraction of a frame's widest face are ignored.")


class PluginSettings(_Section):
    enabled: list[str] = Field(default_factory=list, description="Face plug-ins to run (names in the entry-point group facestream.face_plugins, e.g. frequent_visitors), each in its own stage and consumer group fed by the events topic (docs/plugins.md).")
    options: dict[str, dict[str, str | int | float | bool | list[str] | dict[str, str]]] = Field(default_factory=dict, description="Options per plug-in name (JSON in the environment: FACESTREAM_PLUGINS_OPTIONS='{\"frequent_visitors\": {\"min_visits\": 3}}'), validated by the plug-in's own config when it activates.")
    timeout_s: float = Field(10.0, gt=0, description="Longest a plug-in may spend on one face (preprocess + process); beyond it the face is dead-lettered with a TimeoutError and the stage goes on.")
    api_url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s/]+(/[^\s]*)?$", description="Base URL of facestream's API for the plug-ins' API client (unset: api.public_url, else http://<api.host>:<api.port>).")
    api_token: SecretStr | None = Field(None, description="Token the plug-ins' API client sends (unset: api.admin_token; none: anonymous calls, most answer 401).")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACESTREAM_", env_nested_delimiter="_", env_nested_max_split=1, extra="forbid"
    )

    data_dir: Path = Field(Path("data"), description="Where the embedded stores and the media live.")
    bootstrap_servers: str | None = Field(None, description="Kafka bootstrap servers; unset starts the embedded broker.")
    log_level: str = Field("INFO", description="Python logging level.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    decoder: DecoderSettings = Field(default_factory=DecoderSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    matcher: MatcherSettings = Field(default_factory=MatcherSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    episodes: EpisodeSettings = Field(default_factory=EpisodeSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    counters: CounterSettings = Field(default_factory=CounterSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    video_liveness: VideoLivenessSettings = Field(default_factory=VideoLivenessSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)

    @model_validator(mode="after")
    def _event_thresholds_not_below_match(self) -> Settings:
        """Episodes and dedup call two *events* the same person: neither side is an enrolment photo, and the
        calibration finds different people's events far more alike (up to 0.87) than an event and a dossier
        photo of someone else (up to 0.28). Below the match threshold they would merge people the matcher
        keeps apart."""
        low = [f"{name}.threshold ({value:g}, --{name}-threshold / FACESTREAM_{name.upper()}_THRESHOLD)"
               for name, value in (("episodes", self.episodes.threshold), ("dedup", self.dedup.threshold))
               if value < self.matcher.threshold]
        if low:
            raise ValueError(f"{' and '.join(low)} must be at least matcher.threshold ({self.matcher.threshold:g}):"
                             " two events are compared with each other, not with a dossier photo")
        return self

    @model_validator(mode="after")
    def _admin_token_env(self) -> Settings:
        """``FACESTREAM_ADMIN_TOKEN`` (the documented automation variable) sets ``api.admin_token``."""
        token = os.environ.get("FACESTREAM_ADMIN_TOKEN")
        if token and self.api.admin_token is None:
            self.api.admin_token = SecretStr(token)
        return self


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from defaults < environment < ``overrides`` (nested dicts, e.g. from CLI flags), validated
    together: a flag may repair what a rule between settings finds wrong in the environment alone."""
    return Settings(**(overrides or {}))


def setting_paths(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf setting as (path, field info): drives CLI flags and the configuration reference."""
    leaves: list[tuple[tuple[str, ...], Any]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            leaves.extend(setting_paths(ann, (*prefix, name)))
        else:
            leaves.append(((*prefix, name), field))
    return leaves
