package dashboard

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/tenant"
)

// Errors of the HTTP layer itself. Domain errors (tenant.ErrNotFound,
// auth.ErrNotAuthorized, broker.ErrBackboneUnavailable, …) are mapped in
// handleError.
var (
	// ErrUnauthenticated means no valid API key or session came with the
	// request (401).
	ErrUnauthenticated = errors.New("authentication required")
	// ErrUnavailable means the backbone or database is down (503).
	ErrUnavailable = errors.New("service unavailable")
	// ErrTooLarge means a request body or message is over its limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrRateLimited means the caller must slow down (429); a
	// *RateLimitError says for how long.
	ErrRateLimited = errors.New("rate limited")
	// ErrForbidden means the caller may not do this (403): an ACL denial,
	// an operator route, a suspended tenant.
	ErrForbidden = auth.ErrNotAuthorized
)

// RateLimitError is ErrRateLimited with the time after which a retry may
// succeed (the Retry-After header, in whole seconds, at least 1).
type RateLimitError struct {
	RetryAfter time.Duration
	Reason     string
}

func (e *RateLimitError) Error() string {
	if e.Reason != "" {
		return e.Reason
	}
	return ErrRateLimited.Error()
}

// Unwrap makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// FieldError is an invalid request field (400 with the field's name in the
// body).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns tenant.ErrInvalid and the cause.
func (e *FieldError) Unwrap() []error { return []error{tenant.ErrInvalid, e.Err} }

// invalidField returns a FieldError for field.
func invalidField(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// apiError is the one JSON error shape. Field names the offending request
// field of a 400, when there is one.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// codes are the error codes by status.
var codes = map[int]string{
	http.StatusBadRequest:            "invalid",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusInternalServerError:   "internal_error",
	http.StatusServiceUnavailable:    "unavailable",
}

// statusOf maps an error to its HTTP status and message.
func statusOf(err error) (int, string) {
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		if m, ok := he.Message.(string); ok {
			return he.Code, m
		}
		return he.Code, http.StatusText(he.Code)
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", mbe.Limit)
	case errors.Is(err, ErrRateLimited), errors.Is(err, auth.ErrThrottled):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, auth.ErrBadCredentials):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, auth.ErrNotAuthorized):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, ErrUnavailable), errors.Is(err, auth.ErrUnavailable), errors.Is(err, broker.ErrBackboneUnavailable):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, tenant.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, tenant.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, ErrTooLarge), errors.Is(err, broker.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, tenant.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case backendDown(err):
		return http.StatusServiceUnavailable, ErrUnavailable.Error() + ": the database or backbone did not answer; try again"
	}
	return http.StatusInternalServerError, "internal error"
}

// backendDown reports whether err is a dependency (the database) being
// unreachable or overloaded rather than a bug: a network error, a broken or
// closed connection, a timeout, or a PostgreSQL error of class 08
// (connection exception), 53 (insufficient resources) or 57 (operator
// intervention, e.g. shutting down). The stores wrap driver errors with %w,
// so they are recognised here, in the one place errors become statuses.
func backendDown(err error) bool {
	var ne net.Error
	var st interface{ SQLState() string }
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return true
	case errors.As(err, &st):
		switch c := st.SQLState(); {
		case strings.HasPrefix(c, "08"), strings.HasPrefix(c, "53"), strings.HasPrefix(c, "57"):
			return true
		}
	}
	return false
}

// handleError is Echo's error handler and the one place where errors
// become HTTP statuses: 400 invalid, 401, 403, 404, 409, 413, 429 (with
// Retry-After), 503 backbone or database down (also when a store's error is
// a connection failure: backendDown), 500 anything else (logged).
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := statusOf(err)
	body := apiError{Code: codes[status], Message: msg}
	if body.Code == "" {
		body.Code = "error"
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		body.Field = fe.Field
	}
	var rl *RateLimitError
	if errors.As(err, &rl) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(max(1, (rl.RetryAfter+time.Second-1)/time.Second))))
	}
	switch {
	case errors.Is(err, context.Canceled):
		// The client went away: nobody reads the answer.
	case status == http.StatusServiceUnavailable:
		s.log.Warn("HTTP request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "err", err)
	case status >= 500:
		s.log.Error("HTTP request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "err", err)
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, body)
	}
	if err != nil {
		s.log.Warn("writing HTTP error", "err", err)
	}
}
