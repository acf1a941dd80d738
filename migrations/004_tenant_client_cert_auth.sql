-- 004_tenant_client_cert_auth: a tenant's opt-in to client certificate
-- logins (a client certificate verified against the edge's --client-ca
-- that names one of the tenant's credentials replaces the password).
--
-- Portable SQL, like 001_init (see README.md): an added column with a
-- default, so existing tenants keep password logins only and an older
-- binary keeps working during a rolling upgrade.

ALTER TABLE tenants ADD COLUMN client_cert_auth BOOLEAN NOT NULL DEFAULT FALSE;
