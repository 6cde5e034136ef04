-- Analytics reads events by type (every tip or metric event of a project) and resolves users;
-- without these, each report scans the whole table.
CREATE INDEX events_by_type ON events (project, type, name, ts);
CREATE INDEX events_by_user_id ON events (project, user_id);
