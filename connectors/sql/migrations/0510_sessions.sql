-- Sessions (issue 16, point 10): tokens expire. A login opens a session (session_id) holding one or more
-- access tokens and one live refresh token; kind is 'access', 'refresh' or 'used' (a refresh token already
-- exchanged: presenting it again ends the session). Tokens issued before expiry existed never expired: they
-- are dropped (everyone logs in again once).
DELETE FROM api_tokens;
ALTER TABLE api_tokens ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'access';
ALTER TABLE api_tokens ADD COLUMN session_id VARCHAR(64) NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN expires_at DOUBLE PRECISION NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS ix_api_tokens_session ON api_tokens (session_id);
CREATE INDEX IF NOT EXISTS ix_api_tokens_expires ON api_tokens (expires_at);

-- Server-side secrets generated once and shared by every API replica on this database (the media URL key).
CREATE TABLE IF NOT EXISTS api_secrets (
    name VARCHAR(64) PRIMARY KEY,
    value VARCHAR(256) NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
