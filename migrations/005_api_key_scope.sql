-- 005_api_key_scope: what an HTTP API key may do.
--
--   * publish: the data plane only (publish, retained messages, watch,
--     reading the tenant's live state), each topic checked against the
--     key's app ACL;
--   * admin: also the tenant's management (apps, credentials, API keys,
--     ACL rules, kicking clients).
--
-- Portable SQL, like 001_init (see README.md): an added column with a
-- default, so an older binary keeps working during a rolling upgrade (the
-- keys it creates are publish keys). Existing keys become publish keys
-- too: until now every key could change its own app's ACL, so the safe
-- reading of an old key is the narrow one; issue an admin key where
-- management through the API is wanted.

ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'publish';
