// Package gormstore implements tenant.Store with GORM on PostgreSQL (for
// production, gorm.io/driver/postgres) or SQLite (for a laptop or a single
// node, github.com/glebarez/sqlite, pure Go). The schema comes from the SQL
// files in package migrations, never from GORM's AutoMigrate.
package gormstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/relaymq/relay/migrations"
	"github.com/relaymq/relay/tenant"
)

var _ tenant.Store = (*Store)(nil)

// Dialects of a Store, as Dialect returns them; the same strings as
// package migrations uses.
const (
	// Postgres is PostgreSQL 15 or later.
	Postgres = migrations.Postgres
	// SQLite is SQLite through github.com/glebarez/sqlite.
	SQLite = migrations.SQLite
)

// slowQuery is the duration above which a query is logged at Warn.
const slowQuery = 500 * time.Millisecond

// Store is a tenant.Store on PostgreSQL or SQLite. Its methods are safe for
// concurrent use.
type Store struct {
	db      *gorm.DB
	dialect string
	log     *slog.Logger

	clockMu sync.Mutex
	last    time.Time // the latest timestamp now returned

	// markConn is the connection ChangeMark reads SQLite's data_version
	// on; it never writes, so every commit counts as another's.
	markMu   sync.Mutex
	markConn *sql.Conn
	markGen  uint64 // connections opened for ChangeMark

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the database at dsn and applies pending migrations.
//
// dsn is one of:
//   - postgres://… or postgresql://… : PostgreSQL (a libpq/pgx URL);
//   - sqlite:///abs/path.db, sqlite://rel/path.db or a plain file path:
//     SQLite, with WAL, busy_timeout 5 s and foreign keys on. The file
//     (mode 0600) and its directory are created if missing. A query string
//     is passed to the driver (e.g. "?_pragma=cache_size(-20000)").
//     ":memory:" is refused: each pooled connection would get its own
//     empty database.
//
// log receives slow queries (Warn) and, at Debug, every query; queries are
// logged without their arguments, so secrets never reach the log. Failed
// queries are not logged above Debug: the error goes to the caller. A nil
// log discards.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialector, dialect, where, err := dialectorFor(dsn)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger: gormLog{log: log.With("component", "gormstore"), slow: slowQuery},
		// Every write here is one statement: no implicit transaction.
		SkipDefaultTransaction: true,
		TranslateError:         true,
		DisableAutomaticPing:   true,
		NowFunc:                func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	})
	if err != nil {
		return nil, fmt.Errorf("gormstore: open %s: %w", where, err)
	}
	s := &Store{db: db, dialect: dialect, log: log}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("gormstore: open %s: %w", where, err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("gormstore: open %s: %w", where, err)
	}
	applied, err := s.Migrate(ctx)
	if err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	log.Info("store open", "dialect", dialect, "db", where, "migrations_applied", applied)
	return s, nil
}

// dialectorFor parses dsn. where describes the database for logs and
// errors, without a password.
func dialectorFor(dsn string) (d gorm.Dialector, dialect, where string, err error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			// Not echoing dsn: it may hold a password.
			return nil, "", "", fmt.Errorf("gormstore: bad PostgreSQL URL: %w", tenant.ErrInvalid)
		}
		return postgres.Open(dsn), Postgres, u.Redacted(), nil
	case strings.HasPrefix(dsn, "sqlite://"):
		return sqliteDialector(strings.TrimPrefix(dsn, "sqlite://"))
	case strings.Contains(dsn, "://"):
		scheme, _, _ := strings.Cut(dsn, "://")
		return nil, "", "", fmt.Errorf("gormstore: unsupported database URL scheme %q (want postgres://, postgresql://, sqlite:// or a file path): %w", scheme, tenant.ErrInvalid)
	default:
		return sqliteDialector(dsn)
	}
}

// sqliteDialector opens path[?query] with the pragmas Relay relies on.
func sqliteDialector(pathQuery string) (gorm.Dialector, string, string, error) {
	path, query, _ := strings.Cut(pathQuery, "?")
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, "", "", fmt.Errorf("gormstore: SQLite needs a file path, got %q: %w", path, tenant.ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, "", "", fmt.Errorf("gormstore: %w", err)
	}
	// Create it private: it holds secret hashes (SQLite gives its -wal and
	// -shm files the same mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", "", fmt.Errorf("gormstore: %w", err)
	}
	_ = f.Close()
	// busy_timeout first: the other pragmas may have to wait for a lock.
	// Transactions stay DEFERRED (no _txlock=immediate): gorm-adapter's
	// SavePolicy empties casbin_rule on another connection while its
	// transaction is open, which an IMMEDIATE transaction would block for
	// good. Deferred transactions are safe here because every transaction
	// in Relay writes first (the store's are single statements; a
	// migration first claims its version): none upgrades a read snapshot
	// to a write, the case that fails at once with SQLITE_BUSY.
	q := "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	if query != "" {
		q += "&" + query
	}
	return sqlite.Open(path + "?" + q), SQLite, path, nil
}

// Migrate applies pending migrations (Open already did) and returns their
// versions; for `relay migrate`.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, fmt.Errorf("gormstore: migrate: %w", err)
	}
	applied, err := migrations.Apply(ctx, sqlDB, s.dialect)
	if err != nil {
		return applied, fmt.Errorf("gormstore: migrate: %w", err)
	}
	return applied, nil
}

// DB returns the GORM handle, for the Casbin adapter (call
// gormadapter.TurnOffAutoMigrate on it first: the casbin_rule table comes
// from the migrations). Callers must go through WithContext.
func (s *Store) DB() *gorm.DB { return s.db }

// Dialect returns Postgres or SQLite.
func (s *Store) Dialect() string { return s.dialect }

// ChangeMark returns a number that differs from the one the previous call
// returned whenever anything may have been committed to the database in
// between, by this process or another: a poller skips its query while the
// mark stands still. ok is false when the database cannot tell cheaply
// (PostgreSQL): the caller then reads what it needs every time.
//
// On SQLite it is PRAGMA data_version, read on a connection of its own
// that never writes: the value changes whenever any other connection
// commits (https://sqlite.org/pragma.html#pragma_data_version).
func (s *Store) ChangeMark(ctx context.Context) (mark uint64, ok bool, err error) {
	if s.dialect != SQLite {
		return 0, false, nil
	}
	s.markMu.Lock()
	defer s.markMu.Unlock()
	if s.markConn == nil {
		sqlDB, err := s.db.DB()
		if err != nil {
			return 0, false, fmt.Errorf("gormstore: change mark: %w", err)
		}
		c, err := sqlDB.Conn(ctx)
		if err != nil {
			return 0, false, fmt.Errorf("gormstore: change mark: %w", err)
		}
		s.markConn = c
		s.markGen++
	}
	var version uint64
	if err := s.markConn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&version); err != nil {
		_ = s.markConn.Close()
		s.markConn = nil
		return 0, false, fmt.Errorf("gormstore: change mark: %w", err)
	}
	// Versions of different connections are not comparable: the
	// connection's number keeps a new series apart from the old one.
	return s.markGen<<40 ^ version, true, nil
}

// Close closes the database connections. It is safe to call more than
// once; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.markMu.Lock()
		if s.markConn != nil {
			_ = s.markConn.Close()
			s.markConn = nil
		}
		s.markMu.Unlock()
		sqlDB, err := s.db.DB()
		if err != nil {
			s.closeErr = err
			return
		}
		s.closeErr = sqlDB.Close()
	})
	return s.closeErr
}

// ---------------------------------------------------------------------------
// helpers

// newID returns 128 random bits in lower-case hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// now returns the time in UTC at microsecond precision (what PostgreSQL
// keeps), strictly later than any earlier now of this Store, so that
// "newest first" is well defined for records made in one process.
func (s *Store) now() time.Time {
	t := time.Now().UTC().Truncate(time.Microsecond)
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if !t.After(s.last) {
		t = s.last.Add(time.Microsecond)
	}
	s.last = t
	return t
}

// dbErr translates a database error: a missing row becomes ErrNotFound, a
// unique violation ErrConflict, a foreign-key violation (the tenant or app
// referred to does not exist in the tenant) ErrNotFound. what names the
// object for the message.
func dbErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%s: %w", what, tenant.ErrNotFound)
	case isUniqueViolation(err):
		return fmt.Errorf("%s: %w", what, tenant.ErrConflict)
	case isForeignKeyViolation(err):
		return fmt.Errorf("%s: %w", what, tenant.ErrNotFound)
	}
	return fmt.Errorf("gormstore: %s: %w", what, err)
}

func isUniqueViolation(err error) bool {
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" // unique_violation
	}
	var se *gosqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

func isForeignKeyViolation(err error) bool {
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503" // foreign_key_violation
	}
	var se *gosqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// invalid returns an ErrInvalid with a message.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), tenant.ErrInvalid)
}
