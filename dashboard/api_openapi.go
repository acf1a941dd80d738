package dashboard

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDoc is the OpenAPI 3.0 description of the JSON API.
//
//go:embed openapi.yaml
var openAPIDoc []byte

// openAPI handles GET /api/v1/openapi.yaml (public).
func (s *Server) openAPI(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.Blob(http.StatusOK, "application/yaml", openAPIDoc)
}
