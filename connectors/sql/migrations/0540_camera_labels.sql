-- Camera labels (string key/value tags, schemas.api.CameraLabels) that travel with the camera's frames, faces
-- and events to face plug-ins. Cameras created before this migration have none.
ALTER TABLE cameras ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
