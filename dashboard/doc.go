// Package dashboard is Relay's web dashboard and HTTP API, served by Echo
// (v4) on one port (18083 by default).
//
// Layout:
//
//   - server.go: Config, Server (New → Handler), middleware chain,
//     route registration.
//   - caller.go: who is calling (Caller): an API key (Bearer or HTTP
//     Basic) or a dashboard session cookie; every handler is scoped to the
//     caller's tenant.
//   - errors.go: the one place errors become HTTP statuses and the one
//     JSON error shape {"code": "...", "message": "..."}.
//   - api*.go: the JSON HTTP API under /api/v1 (documented by
//     openapi.yaml, served at /api/v1/openapi.yaml).
//   - web*.go, templates/, static/: the dashboard pages (server-rendered
//     Go templates, a little vendored JS) which call the same JSON API.
//
// The package defines the interfaces it consumes (deps.go); services/
// wires the implementations (services/admin, the NATS backbone, the
// cluster inspector).
package dashboard
