-- 003_users: dashboard users and their web sessions.
--
-- Portable SQL, like 001_init (see README.md).
--   * users.email is stored lower-cased by the application
--     (tenant.NormalizeEmail), so the plain UNIQUE makes it unique
--     regardless of case on both databases (an index on lower(email) would
--     differ: SQLite's lower() folds ASCII only).
--   * users.tenant_id is NULL for platform operators, who belong to no
--     tenant; an owner's user goes with its tenant.
--   * web_sessions.id is the keyed hash (HMAC-SHA-256 under the server key,
--     lower-case hex) of the 256-bit random token in the browser's cookie,
--     never the token itself.

CREATE TABLE users (
	id            TEXT      NOT NULL PRIMARY KEY,
	email         TEXT      NOT NULL UNIQUE,
	password_hash TEXT      NOT NULL,
	tenant_id     TEXT      NULL REFERENCES tenants (id) ON DELETE CASCADE,
	role          TEXT      NOT NULL,
	created_at    TIMESTAMP NOT NULL
);

CREATE INDEX users_tenant_idx ON users (tenant_id);

CREATE TABLE web_sessions (
	id         TEXT      NOT NULL PRIMARY KEY,
	user_id    TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	csrf_token TEXT      NOT NULL,
	created_at TIMESTAMP NOT NULL,
	expires_at TIMESTAMP NOT NULL,
	last_seen  TIMESTAMP NOT NULL
);

CREATE INDEX web_sessions_user_idx ON web_sessions (user_id);
-- The sweep of expired sessions.
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
CREATE INDEX web_sessions_last_seen_idx ON web_sessions (last_seen);
