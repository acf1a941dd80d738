// Package migrations holds Relay's SQL schema as numbered, append-only
// migrations embedded in the binary, and the runner that applies them to
// PostgreSQL or SQLite. It imports no database driver and no live model:
// callers hand it a *sql.DB and name its dialect.
//
// File names are NNN_name.sql (one file for every dialect) or, for a
// migration that cannot be written portably, NNN_name.postgres.sql plus
// NNN_name.sqlite.sql (one per dialect, no plain file). The version is
// "NNN_name" in both cases, so schema_migrations reads the same on both
// databases. See README.md for the rules.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"time"
)

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS

// Dialects understood by Apply.
const (
	// Postgres is PostgreSQL 15 or later.
	Postgres = "postgres"
	// SQLite is SQLite 3.35 or later (github.com/glebarez/sqlite).
	SQLite = "sqlite"
)

// dialects lists every dialect; a migration with dialect-specific files has
// one for each.
var dialects = []string{Postgres, SQLite}

// Migration is one version and the file that implements it for a dialect.
type Migration struct {
	// Version is "NNN_name": the file name without dialect and ".sql".
	Version string
	// File is the name of the file in FS to run.
	File string
}

// fileName is NNN_name[.dialect].sql.
var fileName = regexp.MustCompile(`^([0-9]{3})_([a-z0-9_]+?)(?:\.(postgres|sqlite))?\.sql$`)

// List returns the migrations for dialect, oldest first. It fails if the
// embedded files break the naming rules.
func List(dialect string) ([]Migration, error) { return list(FS, dialect) }

func list(fsys fs.FS, dialect string) ([]Migration, error) {
	if !slices.Contains(dialects, dialect) {
		return nil, fmt.Errorf("migrations: unknown dialect %q (want %q or %q)", dialect, Postgres, SQLite)
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	type version struct {
		name    string
		generic string
		byDial  map[string]string
	}
	byNum := map[string]*version{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrations: bad file name %q (want NNN_name.sql or NNN_name.<dialect>.sql)", e.Name())
		}
		num, name, dial := m[1], m[2], m[3]
		v := byNum[num]
		if v == nil {
			v = &version{name: name, byDial: map[string]string{}}
			byNum[num] = v
		}
		if v.name != name {
			return nil, fmt.Errorf("migrations: number %s used by two names, %q and %q", num, v.name, name)
		}
		if dial == "" {
			v.generic = e.Name()
		} else {
			v.byDial[dial] = e.Name()
		}
	}
	nums := make([]string, 0, len(byNum))
	for n := range byNum {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	out := make([]Migration, 0, len(nums))
	for _, n := range nums {
		v := byNum[n]
		version := n + "_" + v.name
		switch {
		case v.generic != "" && len(v.byDial) > 0:
			return nil, fmt.Errorf("migrations: %s has both a plain file and dialect files", version)
		case v.generic != "":
			out = append(out, Migration{Version: version, File: v.generic})
		default:
			for _, d := range dialects {
				if v.byDial[d] == "" {
					return nil, fmt.Errorf("migrations: %s has dialect files but none for %s", version, d)
				}
			}
			out = append(out, Migration{Version: version, File: v.byDial[dialect]})
		}
	}
	return out, nil
}

// bookkeeping creates the table of applied versions. It is portable SQL and
// part of no migration, so that it can be created before any of them.
const bookkeeping = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    TEXT      NOT NULL PRIMARY KEY,
	applied_at TIMESTAMP NOT NULL
)`

// Apply applies every pending migration for dialect to db, oldest first,
// each in its own transaction together with its row in schema_migrations,
// and returns the versions it applied (none when the schema is current).
// It is safe to call again, and from several processes at once: a version
// another process applied meanwhile is skipped. Versions in the database
// that this binary does not know (a newer Relay applied them) are left
// alone. On error, the failing migration is rolled back and the versions
// before it stay applied.
func Apply(ctx context.Context, db *sql.DB, dialect string) (applied []string, err error) {
	return apply(ctx, db, dialect, FS)
}

func apply(ctx context.Context, db *sql.DB, dialect string, fsys fs.FS) ([]string, error) {
	ms, err := list(fsys, dialect)
	if err != nil {
		return nil, err
	}
	done, err := appliedVersions(ctx, db)
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		body, err := fs.ReadFile(fsys, m.File)
		if err != nil {
			return applied, fmt.Errorf("migrations: %w", err)
		}
		ran, err := applyOne(ctx, db, dialect, m, string(body))
		if err != nil {
			return applied, err
		}
		if ran {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// applyOne runs one migration in a transaction. The transaction's first
// statement claims the version in schema_migrations: a second process
// doing the same waits on that row (PostgreSQL) or on the write lock
// (SQLite) and then fails to insert it, and skips the migration
// (ran == false).
func applyOne(ctx context.Context, db *sql.DB, dialect string, m Migration, body string) (ran bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrations: %s: begin: %w", m.Version, err)
	}
	defer func() {
		if err != nil || !ran {
			_ = tx.Rollback()
		}
	}()
	claim := "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"
	if dialect == Postgres {
		claim = "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"
	}
	if _, cerr := tx.ExecContext(ctx, claim, m.Version, time.Now().UTC().Truncate(time.Microsecond)); cerr != nil {
		// Applied meanwhile by someone else? Ask outside this (now
		// aborted, on PostgreSQL) transaction.
		_ = tx.Rollback()
		done, err := appliedVersions(ctx, db)
		if err == nil && done[m.Version] {
			return false, nil
		}
		return false, fmt.Errorf("migrations: %s: record version: %w", m.Version, cerr)
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return false, fmt.Errorf("migrations: %s (%s): %w", m.Version, m.File, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrations: %s: commit: %w", m.Version, err)
	}
	return true, nil
}

// Pending returns the versions of the embedded migrations that db has not
// applied, oldest first. Versions are the same for every dialect, so it
// needs none. It creates the (empty) schema_migrations table if there is
// none yet.
func Pending(ctx context.Context, db *sql.DB) ([]string, error) {
	// Any dialect lists the same versions.
	ms, err := list(FS, Postgres)
	if err != nil {
		return nil, err
	}
	done, err := appliedVersions(ctx, db)
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, m := range ms {
		if !done[m.Version] {
			pending = append(pending, m.Version)
		}
	}
	return pending, nil
}

// appliedVersions creates schema_migrations if need be and returns the
// versions it holds.
func appliedVersions(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	// Concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL (both
	// see no table, one loses the race on the catalog): try again.
	var err error
	for range 3 {
		if _, err = db.ExecContext(ctx, bookkeeping); err == nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("migrations: create schema_migrations: %w", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
		}
		done[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
	}
	return done, nil
}
