-- 001_init: tenants, apps, credentials, API keys, audit records.
--
-- Portable SQL: this file runs unchanged on PostgreSQL 15+ and SQLite and
-- yields the same schema there (TestSchemaEquivalence checks). Hence:
--   * ids are TEXT, random, made by the application (no sequences);
--   * types are TEXT, BIGINT, BOOLEAN and TIMESTAMP only; timestamps are UTC;
--   * every column is explicitly NOT NULL or not (SQLite lets a TEXT
--     PRIMARY KEY hold NULL unless told otherwise);
--   * secret hashes are TEXT holding lower-case hex (BYTEA and BLOB are not
--     the same type on both, and hex has one spelling per value);
--   * constraints and indexes are named or declared explicitly.

CREATE TABLE tenants (
	id                TEXT      NOT NULL PRIMARY KEY,
	slug              TEXT      NOT NULL UNIQUE,
	name              TEXT      NOT NULL,
	status            TEXT      NOT NULL,
	max_connections   BIGINT    NOT NULL DEFAULT 0,
	max_message_rate  BIGINT    NOT NULL DEFAULT 0,
	max_retained      BIGINT    NOT NULL DEFAULT 0,
	max_session_queue BIGINT    NOT NULL DEFAULT 0,
	created_at        TIMESTAMP NOT NULL,
	updated_at        TIMESTAMP NOT NULL
);

CREATE TABLE apps (
	id         TEXT      NOT NULL PRIMARY KEY,
	tenant_id  TEXT      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	name       TEXT      NOT NULL,
	created_at TIMESTAMP NOT NULL,
	UNIQUE (tenant_id, name),
	-- Target of the (tenant_id, app_id) foreign keys below: a credential or
	-- key can only belong to an app of its own tenant.
	UNIQUE (tenant_id, id)
);

CREATE TABLE credentials (
	id                TEXT      NOT NULL PRIMARY KEY,
	tenant_id         TEXT      NOT NULL,
	app_id            TEXT      NOT NULL,
	username          TEXT      NOT NULL,
	secret_hash       TEXT      NOT NULL,
	hash_scheme       TEXT      NOT NULL,
	client_id_pattern TEXT      NOT NULL DEFAULT '',
	revoked           BOOLEAN   NOT NULL DEFAULT FALSE,
	created_at        TIMESTAMP NOT NULL,
	revoked_at        TIMESTAMP NULL,
	UNIQUE (tenant_id, username),
	FOREIGN KEY (tenant_id, app_id) REFERENCES apps (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX credentials_tenant_app_idx ON credentials (tenant_id, app_id);

CREATE TABLE api_keys (
	id          TEXT      NOT NULL PRIMARY KEY,
	tenant_id   TEXT      NOT NULL,
	app_id      TEXT      NOT NULL,
	prefix      TEXT      NOT NULL UNIQUE,
	secret_hash TEXT      NOT NULL,
	revoked     BOOLEAN   NOT NULL DEFAULT FALSE,
	created_at  TIMESTAMP NOT NULL,
	revoked_at  TIMESTAMP NULL,
	FOREIGN KEY (tenant_id, app_id) REFERENCES apps (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant_id, created_at);
CREATE INDEX api_keys_tenant_app_idx ON api_keys (tenant_id, app_id);

CREATE TABLE audit_records (
	id        TEXT      NOT NULL PRIMARY KEY,
	tenant_id TEXT      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	actor     TEXT      NOT NULL,
	action    TEXT      NOT NULL,
	target    TEXT      NOT NULL DEFAULT '',
	detail    TEXT      NOT NULL DEFAULT '',
	at        TIMESTAMP NOT NULL
);

CREATE INDEX audit_records_tenant_at_idx ON audit_records (tenant_id, at);
-- The change feed: every tenant's records since a time (Store.AuditSince).
CREATE INDEX audit_records_at_idx ON audit_records (at);
