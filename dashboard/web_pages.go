package dashboard

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/tenant"
)

// The page handlers render the shell of each page with the session's
// tenant; the page's script fills it from the JSON API. Every page is
// scoped to the session's tenant: there is no tenant in any URL, and a
// name that is not the tenant's (an app of another tenant) is 404.

// tenantPage renders a page of the session's tenant. Operators, who have
// no tenant, go to their own page.
func (s *Server) tenantPage(name, title string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ws, _ := s.session(c) // requirePage loaded it
		if ws.tenant == nil {
			return c.Redirect(http.StatusSeeOther, "/operator")
		}
		return s.render(c, http.StatusOK, name, s.pageOf(ws, name, title, nil))
	}
}

// pageOf fills the common page fields from the session.
func (s *Server) pageOf(ws *webSession, nav, title string, data any) page {
	return page{
		Title: title, Nav: nav, CSRF: ws.sess.CSRFToken,
		User: ws.user, Tenant: ws.tenant, Operator: ws.user.Role == tenant.RoleOperator,
		Script: nav + ".js", Data: data,
	}
}

// appData is the app page's data.
type appData struct {
	App *tenant.App
}

// appPage shows one app of the session's tenant: its credentials, API
// keys and rules. Another tenant's app is 404, as is an unknown one.
func (s *Server) appPage(c echo.Context) error {
	ws, _ := s.session(c)
	if ws.tenant == nil {
		return s.notFound(c)
	}
	app, err := s.web.deps.Store.AppByName(c.Request().Context(), ws.tenant.ID, c.Param("app"))
	if errors.Is(err, tenant.ErrNotFound) {
		return s.notFound(c)
	}
	if err != nil {
		return errors.Join(ErrUnavailable, err)
	}
	p := s.pageOf(ws, "apps", app.Name, appData{App: app})
	p.Script = "appdetail.js"
	return s.render(c, http.StatusOK, "app", p)
}

// operatorPage is the platform operators' page: every tenant, suspend
// and resume, platform health. Others get 404 (it does not exist for
// them).
func (s *Server) operatorPage(c echo.Context) error {
	ws, _ := s.session(c)
	if ws.user.Role != tenant.RoleOperator {
		return s.notFound(c)
	}
	return s.render(c, http.StatusOK, "operator", s.pageOf(ws, "operator", "Platform", nil))
}

// notFound answers unknown paths: the JSON error for the API, a page for
// people.
func (s *Server) notFound(c echo.Context) error {
	p := c.Request().URL.Path
	if strings.HasPrefix(p, "/api/") || !s.web.enabled() || !acceptsHTML(c) {
		return echo.ErrNotFound
	}
	ws, err := s.session(c)
	if err != nil {
		return err
	}
	if ws == nil {
		return s.render(c, http.StatusNotFound, "message", page{Title: "Not found", Data: messageData{
			Heading: "Page not found", Text: "There is nothing at this address.", Link: "/login", LinkText: "Go to sign in",
		}})
	}
	pg := s.pageOf(ws, "", "Not found", nil)
	pg.Script = ""
	return s.render(c, http.StatusNotFound, "error", pg)
}

// acceptsHTML reports whether the client wants a page (a browser).
func acceptsHTML(c echo.Context) bool {
	a := c.Request().Header.Get("Accept")
	return a == "" || strings.Contains(a, "text/html") || strings.Contains(a, "*/*")
}
