package tenant

// reservedSlugs are host-name labels a tenant cannot take: names an
// operator is likely to give the platform's own endpoints under the base
// domain (mqtt.<base-domain> must not silently be a tenant's host).
var reservedSlugs = map[string]bool{
	"default": true, "admin": true, "api": true, "app": true, "auth": true, "broker": true,
	"cdn": true, "console": true, "control": true, "dashboard": true, "docs": true, "edge": true,
	"ftp": true, "help": true, "imap": true, "internal": true, "login": true, "mail": true,
	"mqtt": true, "mqtts": true, "nats": true, "ns1": true, "ns2": true, "operator": true,
	"pop": true, "relay": true, "root": true, "smtp": true, "sso": true, "static": true,
	"status": true, "support": true, "system": true, "sys": true, "www": true, "ws": true, "wss": true,
}

// ReservedSlug reports whether s is kept for the platform (see
// reservedSlugs); DefaultSlug is one of them.
func ReservedSlug(s string) bool { return reservedSlugs[s] }
