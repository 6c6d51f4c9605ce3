-- facestream core schema. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are UNIX seconds (DOUBLE PRECISION, UTC); JSON documents are TEXT; booleans are BOOLEAN.
-- Statements are separated by a semicolon at the end of a line.

CREATE TABLE IF NOT EXISTS users (
    id VARCHAR(64) PRIMARY KEY,
    username VARCHAR(128) NOT NULL UNIQUE,
    password_hash VARCHAR(256) NOT NULL,
    role VARCHAR(16) NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash VARCHAR(64) PRIMARY KEY,
    user_id VARCHAR(64) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS camera_groups (
    id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256) NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

INSERT INTO camera_groups (id, name, comment, created_at, updated_at)
    SELECT 'default', 'default', 'Cameras without a group', 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM camera_groups WHERE id = 'default');

CREATE TABLE IF NOT EXISTS cameras (
    id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256) NOT NULL,
    url TEXT NOT NULL,
    camera_group VARCHAR(64) NOT NULL REFERENCES camera_groups (id),
    active BOOLEAN NOT NULL,
    roi TEXT,
    best_face_mode VARCHAR(16),
    filters TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS watch_lists (
    id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256) NOT NULL,
    color VARCHAR(16) NOT NULL,
    active BOOLEAN NOT NULL,
    threshold DOUBLE PRECISION,
    camera_groups TEXT NOT NULL DEFAULT '[]',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS dossiers (
    id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256) NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}',
    active BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS dossier_watch_lists (
    dossier_id VARCHAR(64) NOT NULL REFERENCES dossiers (id) ON DELETE CASCADE,
    watch_list_id VARCHAR(64) NOT NULL REFERENCES watch_lists (id) ON DELETE CASCADE,
    PRIMARY KEY (dossier_id, watch_list_id)
);

CREATE TABLE IF NOT EXISTS dossier_faces (
    id VARCHAR(64) PRIMARY KEY,
    dossier_id VARCHAR(64) NOT NULL REFERENCES dossiers (id) ON DELETE CASCADE,
    image_key TEXT NOT NULL,
    quality DOUBLE PRECISION NOT NULL,
    bbox TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_dossier_faces_dossier ON dossier_faces (dossier_id);

CREATE TABLE IF NOT EXISTS events (
    id VARCHAR(256) PRIMARY KEY,
    face_id VARCHAR(256) NOT NULL,
    camera_id VARCHAR(64) NOT NULL,
    camera_group VARCHAR(64) NOT NULL,
    track_id BIGINT NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    matched BOOLEAN NOT NULL,
    dossier_id VARCHAR(64),
    dossier_name VARCHAR(256),
    confidence DOUBLE PRECISION NOT NULL,
    quality DOUBLE PRECISION NOT NULL,
    bbox TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    frame_key TEXT,
    thumbnail_key TEXT,
    video_id VARCHAR(64),
    episode_id VARCHAR(256),
    acknowledged BOOLEAN NOT NULL DEFAULT FALSE,
    acknowledged_at DOUBLE PRECISION,
    acknowledged_by VARCHAR(128),
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_events_timestamp ON events (timestamp);
CREATE INDEX IF NOT EXISTS ix_events_camera ON events (camera_id, timestamp);
CREATE INDEX IF NOT EXISTS ix_events_dossier ON events (dossier_id, timestamp);
CREATE INDEX IF NOT EXISTS ix_events_video ON events (video_id);

CREATE TABLE IF NOT EXISTS event_watch_lists (
    event_id VARCHAR(256) NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    watch_list_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (event_id, watch_list_id)
);

CREATE INDEX IF NOT EXISTS ix_event_watch_lists_wl ON event_watch_lists (watch_list_id, event_id);

CREATE TABLE IF NOT EXISTS videos (
    id VARCHAR(64) PRIMARY KEY,
    filename VARCHAR(512) NOT NULL,
    media_key TEXT NOT NULL,
    camera_id VARCHAR(128) NOT NULL,
    camera_group VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    frames_done BIGINT NOT NULL DEFAULT 0,
    frames_total BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
