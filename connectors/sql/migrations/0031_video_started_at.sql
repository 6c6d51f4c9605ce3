-- When an uploaded video's first frame was shot (UNIX s): a re-run after a restart repeats its event times.
ALTER TABLE videos ADD COLUMN started_at DOUBLE PRECISION;
