-- Episodes, counters, webhooks and Telegram rules (helper-4). Portable SQL: SQLite and PostgreSQL.
-- Times are UNIX seconds; JSON documents (lists, filters, a full Episode) are TEXT.

CREATE TABLE IF NOT EXISTS episodes (
    id VARCHAR(256) PRIMARY KEY,
    camera_group VARCHAR(64) NOT NULL,
    video_id VARCHAR(64),
    opened_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL,
    closed BOOLEAN NOT NULL,
    close_reason VARCHAR(32),
    event_count BIGINT NOT NULL,
    matched BOOLEAN NOT NULL,
    dossier_id VARCHAR(64),
    doc TEXT NOT NULL,
    acknowledged BOOLEAN NOT NULL DEFAULT FALSE,
    acknowledged_at DOUBLE PRECISION,
    acknowledged_by VARCHAR(128),
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_episodes_opened ON episodes (opened_at);
CREATE INDEX IF NOT EXISTS ix_episodes_dossier ON episodes (dossier_id, opened_at);

CREATE TABLE IF NOT EXISTS episode_events (
    episode_id VARCHAR(256) NOT NULL,
    event_id VARCHAR(256) NOT NULL,
    PRIMARY KEY (episode_id, event_id)
);

CREATE INDEX IF NOT EXISTS ix_episode_events_event ON episode_events (event_id);

CREATE TABLE IF NOT EXISTS episode_cameras (
    episode_id VARCHAR(256) NOT NULL,
    camera_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (episode_id, camera_id)
);

CREATE TABLE IF NOT EXISTS episode_watch_lists (
    episode_id VARCHAR(256) NOT NULL,
    watch_list_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (episode_id, watch_list_id)
);

CREATE TABLE IF NOT EXISTS counters (
    id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256) NOT NULL,
    camera_ids TEXT NOT NULL,
    camera_groups TEXT NOT NULL,
    interval_s DOUBLE PRECISION NOT NULL,
    active BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS counter_records (
    counter_id VARCHAR(64) NOT NULL,
    start_at DOUBLE PRECISION NOT NULL,
    end_at DOUBLE PRECISION NOT NULL,
    faces BIGINT NOT NULL,
    matched BIGINT NOT NULL,
    unmatched BIGINT NOT NULL,
    camera_ids TEXT NOT NULL,
    final BOOLEAN NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (counter_id, start_at)
);

CREATE TABLE IF NOT EXISTS webhooks (
    id VARCHAR(64) PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    topics TEXT NOT NULL,
    filters TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    max_attempts BIGINT,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_outbox (
    webhook_id VARCHAR(64) NOT NULL,
    item_id VARCHAR(512) NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (webhook_id, item_id)
);

CREATE INDEX IF NOT EXISTS ix_webhook_outbox_seq ON webhook_outbox (webhook_id, seq);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id VARCHAR(64) PRIMARY KEY,
    webhook_id VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts BIGINT NOT NULL,
    item_ids TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_attempt_at DOUBLE PRECISION,
    http_status BIGINT,
    error TEXT
);

CREATE INDEX IF NOT EXISTS ix_webhook_deliveries_wh ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE IF NOT EXISTS telegram_rules (
    id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256) NOT NULL,
    chat_id VARCHAR(128) NOT NULL,
    filters TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS telegram_cooldowns (
    chat_id VARCHAR(128) NOT NULL,
    person_key VARCHAR(256) NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (chat_id, person_key)
);

CREATE TABLE IF NOT EXISTS telegram_outbox (
    id VARCHAR(512) PRIMARY KEY,
    chat_id VARCHAR(128) NOT NULL,
    caption TEXT NOT NULL,
    thumbnail_key TEXT,
    status VARCHAR(16) NOT NULL,
    attempts BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    error TEXT
);

CREATE INDEX IF NOT EXISTS ix_telegram_outbox_status ON telegram_outbox (status, next_attempt_at);
