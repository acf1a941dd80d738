package gormstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm/logger"
)

// gormLog adapts GORM's logger to slog. Every error a query returns also
// goes back to the caller, who decides whether it is worth logging (a
// unique violation usually is not), so failed queries are logged at Debug
// only; slow ones at Warn; all of them at Debug. Queries are logged with
// placeholders, never with their arguments (secret hashes).
type gormLog struct {
	log  *slog.Logger
	slow time.Duration
}

var (
	_ logger.Interface = gormLog{}
	_ interface {
		ParamsFilter(ctx context.Context, sql string, params ...any) (string, []any)
	} = gormLog{}
)

// LogMode is ignored: the slog handler's level decides.
func (l gormLog) LogMode(logger.LogLevel) logger.Interface { return l }

// Info logs GORM's own messages at Info.
func (l gormLog) Info(ctx context.Context, msg string, args ...any) {
	l.log.InfoContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

// Warn logs GORM's own warnings at Warn.
func (l gormLog) Warn(ctx context.Context, msg string, args ...any) {
	l.log.WarnContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

// Error logs GORM's own errors at Error.
func (l gormLog) Error(ctx context.Context, msg string, args ...any) {
	l.log.ErrorContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

// Trace logs one query.
func (l gormLog) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	elapsed := time.Since(begin)
	level := slog.LevelDebug
	if l.slow > 0 && elapsed > l.slow {
		level = slog.LevelWarn
	}
	if !l.log.Enabled(ctx, level) {
		return
	}
	sql, rows := fc()
	attrs := []any{"sql", sql, "rows", rows, "duration", elapsed}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	msg := "sql"
	if level == slog.LevelWarn {
		msg = "slow sql"
	}
	l.log.Log(ctx, level, msg, attrs...)
}

// ParamsFilter drops the arguments, so that Trace's SQL keeps its
// placeholders.
func (gormLog) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}
