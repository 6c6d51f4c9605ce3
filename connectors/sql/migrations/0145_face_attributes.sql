-- Flat face attributes (schemas/attributes.py) of events and of episodes (their best event), for filters.
-- Rows stored before this migration keep NULLs: their distributions stay in events.attributes.
ALTER TABLE events ADD COLUMN gender VARCHAR(8);
ALTER TABLE events ADD COLUMN age DOUBLE PRECISION;
ALTER TABLE events ADD COLUMN mask BOOLEAN;
ALTER TABLE events ADD COLUMN emotion VARCHAR(16);
ALTER TABLE events ADD COLUMN liveness DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS ix_events_mask ON events (mask, timestamp);
CREATE INDEX IF NOT EXISTS ix_events_gender_age ON events (gender, age);
ALTER TABLE episodes ADD COLUMN gender VARCHAR(8);
ALTER TABLE episodes ADD COLUMN age DOUBLE PRECISION;
ALTER TABLE episodes ADD COLUMN mask BOOLEAN;
ALTER TABLE episodes ADD COLUMN emotion VARCHAR(16);
