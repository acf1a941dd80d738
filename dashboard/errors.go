package dashboard

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Errors of the HTTP layer itself. Domain errors (tenant.ErrNotFound,
// auth.ErrNotAuthorized, …) are mapped in handleError.
var (
	// ErrUnauthenticated means no valid API key or session came with the
	// request.
	ErrUnauthenticated = errors.New("authentication required")
	// ErrUnavailable means the backbone or database is down.
	ErrUnavailable = errors.New("service unavailable")
)

// apiError is the one JSON error shape.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// handleError is Echo's error handler and the one place where errors
// become HTTP statuses.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, code := http.StatusInternalServerError, "internal_error"
	msg := "internal error"
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status = he.Code
		code = http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		} else {
			msg = http.StatusText(he.Code)
		}
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, auth.ErrBadCredentials):
		status, code, msg = http.StatusUnauthorized, "unauthorized", err.Error()
	case errors.Is(err, auth.ErrNotAuthorized):
		status, code, msg = http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, tenant.ErrNotFound):
		status, code, msg = http.StatusNotFound, "not_found", err.Error()
	case errors.Is(err, tenant.ErrConflict):
		status, code, msg = http.StatusConflict, "conflict", err.Error()
	case errors.Is(err, tenant.ErrInvalid):
		status, code, msg = http.StatusBadRequest, "invalid", err.Error()
	case errors.Is(err, ErrUnavailable), errors.Is(err, auth.ErrUnavailable):
		status, code, msg = http.StatusServiceUnavailable, "unavailable", err.Error()
	}
	if status >= 500 {
		s.log.Error("HTTP request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "err", err)
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, apiError{Code: code, Message: msg})
	}
	if err != nil {
		s.log.Warn("writing HTTP error", "err", err)
	}
}
