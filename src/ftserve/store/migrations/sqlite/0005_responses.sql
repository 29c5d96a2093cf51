-- Version 5: stored responses of the Responses API, per organization, until they expire.
CREATE TABLE responses (id TEXT PRIMARY KEY, organization TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, body TEXT NOT NULL, items TEXT NOT NULL);
CREATE INDEX responses_by_expiry ON responses (expires_at);
