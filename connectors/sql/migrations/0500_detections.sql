-- Faces found by POST /v1/detect, kept for api.detection_ttl_s so that search, verify and enrolment can name
-- them (detection:<id>) instead of uploading the photo again. One source image per detect call (batch_id).

CREATE TABLE IF NOT EXISTS detections (
    id VARCHAR(64) PRIMARY KEY,
    batch_id VARCHAR(64) NOT NULL,
    image_key TEXT NOT NULL,
    bbox TEXT NOT NULL,
    quality DOUBLE PRECISION NOT NULL,
    descriptor TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_detections_expires ON detections (expires_at);
