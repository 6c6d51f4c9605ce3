-- How many of the track's faces the identity decision of an event used (issue 11: decisions on whole tracks).
-- Rows stored before this migration keep NULL: the number was not recorded then.
ALTER TABLE events ADD COLUMN faces_used BIGINT;
