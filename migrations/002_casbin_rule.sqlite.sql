-- 002_casbin_rule (SQLite): the table of github.com/casbin/gorm-adapter/v3
-- (v3.39.0, CasbinRule), which Relay uses with TurnOffAutoMigrate.
--
-- The adapter inserts rows without an id and reads the generated one back
-- (autoIncrement), so id needs a database-generated value: here the rowid
-- (which only a column typed exactly INTEGER PRIMARY KEY aliases;
-- AUTOINCREMENT keeps ids increasing, as PostgreSQL's identity does, so that
-- policies load in the order they were added), an identity column in the
-- PostgreSQL twin of this file. That is the only reason this migration has one
-- file per dialect; keep the two files the same in every other respect.
--
-- ptype and v0..v5: TEXT, not the adapter's VARCHAR(100) (a hint for its
-- AutoMigrate only), because MQTT topic filters in rules may be longer. NOT
-- NULL DEFAULT '': the adapter always writes all seven, unused ones as '',
-- and scans them into Go strings, which cannot hold NULL.
-- idx_casbin_rule is the unique index the adapter would create itself (same
-- name and columns): AddPolicy's ON CONFLICT DO NOTHING relies on it.

CREATE TABLE casbin_rule (
	id    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	ptype TEXT NOT NULL DEFAULT '',
	v0    TEXT NOT NULL DEFAULT '',
	v1    TEXT NOT NULL DEFAULT '',
	v2    TEXT NOT NULL DEFAULT '',
	v3    TEXT NOT NULL DEFAULT '',
	v4    TEXT NOT NULL DEFAULT '',
	v5    TEXT NOT NULL DEFAULT ''
);

CREATE UNIQUE INDEX idx_casbin_rule ON casbin_rule (ptype, v0, v1, v2, v3, v4, v5);
