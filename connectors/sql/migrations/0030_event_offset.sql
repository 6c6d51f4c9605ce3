-- Events of uploaded videos carry their offset from the start of the video (seconds); live events NULL.
ALTER TABLE events ADD COLUMN offset_s DOUBLE PRECISION;
