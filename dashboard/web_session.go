package dashboard

// Dashboard users: sign-up, sign-in (throttled), sessions and CSRF.
//
// Sessions. The browser holds a 256-bit random token in the cookie
// relay_session (HttpOnly, SameSite=Lax, Secure over HTTPS, Path=/); the
// database holds only its keyed hash (auth.Keyed, the server key), so a
// leaked web_sessions table signs nobody in. A session ends after 12 h
// without use or 7 days after sign-in; signing in always starts a new
// session (and ends the one the browser had), signing out deletes it.
//
// CSRF. Every session has its own random token, written into each page
// (<meta name="csrf-token">, hidden form fields). Every unsafe request
// (POST, PUT, PATCH, DELETE) authenticated by the cookie must carry it in
// the X-CSRF-Token header or the csrf_token form field, or it is refused
// with 403 (sessionCaller for the API, checkSessionCSRF for forms). The
// sign-in and sign-up forms come before any session: they use a signed
// double-submit token, a random value with its keyed MAC in the cookie
// relay_csrf (HttpOnly, SameSite=Strict) that the form must repeat.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Cookie and form field names.
const (
	sessionCookie = "relay_session"
	csrfCookie    = "relay_csrf"
	csrfField     = "csrf_token"
	csrfHeader    = "X-CSRF-Token"
)

// Password rules for dashboard users.
const (
	// MinPasswordLength is the shortest password accepted, in characters.
	MinPasswordLength = 10
	// maxPasswordLength bounds the work of hashing one.
	maxPasswordLength = 1024
)

// NewUser checks a new dashboard user's email and password (at least
// MinPasswordLength characters) and returns the user with the password
// hashed (argon2id), ready for UserStore.CreateUser: an owner of tenantID,
// or an operator if tenantID is "". Errors wrap tenant.ErrInvalid.
func NewUser(email, password, tenantID string) (*tenant.User, error) {
	e, ok := tenant.NormalizeEmail(email)
	if !ok {
		return nil, fmt.Errorf("%w: email %q: want an address like you@example.com", tenant.ErrInvalid, email)
	}
	if msg := passwordProblem(password); msg != "" {
		return nil, fmt.Errorf("%w: password: %s", tenant.ErrInvalid, msg)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return nil, err
	}
	u := &tenant.User{Email: e, PasswordHash: hash, TenantID: tenantID, Role: tenant.RoleOwner}
	if tenantID == "" {
		u.Role = tenant.RoleOperator
	}
	return u, nil
}

// passwordProblem says what is wrong with a new password ("" if nothing).
func passwordProblem(pw string) string {
	switch {
	case !utf8.ValidString(pw):
		return "Use valid text."
	case utf8.RuneCountInString(pw) < MinPasswordLength:
		return fmt.Sprintf("Use at least %d characters.", MinPasswordLength)
	case len(pw) > maxPasswordLength:
		return fmt.Sprintf("Use at most %d characters.", maxPasswordLength)
	}
	return ""
}

// errCSRF refuses an unsafe request without the right CSRF token.
var errCSRF = echo.NewHTTPError(http.StatusForbidden, "missing or invalid CSRF token: reload the page and try again")

// webSession is a request's signed-in session.
type webSession struct {
	sess   *tenant.Session
	user   *tenant.User
	tenant *tenant.Tenant // nil for an operator
}

func (ws *webSession) caller() *Caller {
	k := &Caller{Actor: ws.user.Email, UserID: ws.user.ID, Operator: ws.user.Role == tenant.RoleOperator, Session: true, SessionID: ws.sess.ID}
	if ws.tenant != nil {
		k.TenantID, k.Tenant = ws.tenant.ID, ws.tenant.Slug
		k.Suspended = ws.tenant.Status != tenant.Active
	}
	return k
}

const webSessionKey = "relay.websession"

// randomToken returns n random bytes in unpadded base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionID is the stored ID of a session token.
func (w *webState) sessionID(token string) string {
	return hex.EncodeToString(w.deps.Keyed.Hash([]byte("relay-session:" + token)))
}

// unsafeMethod reports whether m changes state.
func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// session returns the request's valid session, or nil. The result is
// cached on c.
func (s *Server) session(c echo.Context) (*webSession, error) {
	w := s.web
	if !w.enabled() {
		return nil, nil
	}
	if v, ok := c.Get(webSessionKey).(*webSession); ok {
		return v, nil
	}
	ck, err := c.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil, nil
	}
	ws, err := s.loadSession(c.Request().Context(), w.sessionID(ck.Value), true)
	if err != nil || ws == nil {
		return nil, err
	}
	c.Set(webSessionKey, ws)
	return ws, nil
}

// loadSession returns the valid session with this stored ID, with its user
// and tenant, or nil (none, ended, or its user has no tenant and is no
// operator). An expired session is deleted; touch records its use.
func (s *Server) loadSession(ctx context.Context, id string, touch bool) (*webSession, error) {
	w := s.web
	sess, user, err := w.deps.Store.SessionUser(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, errors.Join(ErrUnavailable, err)
	}
	now := w.now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeen) >= sessionIdle {
		if err := w.deps.Store.DeleteSession(ctx, id); err != nil {
			s.log.Warn("deleting expired dashboard session", "err", err)
		}
		return nil, nil
	}
	if touch && now.Sub(sess.LastSeen) >= sessionTouch {
		if err := w.deps.Store.TouchSession(ctx, id, now); err != nil {
			s.log.Warn("updating dashboard session", "err", err)
		}
	}
	ws := &webSession{sess: sess, user: user}
	if user.TenantID != "" {
		t, err := w.deps.Store.TenantByID(ctx, user.TenantID)
		if errors.Is(err, tenant.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, errors.Join(ErrUnavailable, err)
		}
		ws.tenant = t
	} else if user.Role != tenant.RoleOperator {
		return nil, nil
	}
	return ws, nil
}

// sessionCaller authenticates a dashboard session cookie, checking the
// CSRF token on unsafe methods; nil, nil if there is no valid session.
func (s *Server) sessionCaller(c echo.Context) (*Caller, error) {
	ws, err := s.session(c)
	if err != nil || ws == nil {
		return nil, err
	}
	if unsafeMethod(c.Request().Method) && !sessionCSRFOK(c, ws) {
		return nil, errCSRF
	}
	return ws.caller(), nil
}

// sessionCSRFOK reports whether c carries ws's CSRF token (header or form
// field).
func sessionCSRFOK(c echo.Context, ws *webSession) bool {
	got := c.Request().Header.Get(csrfHeader)
	if got == "" {
		got = c.FormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ws.sess.CSRFToken)) == 1
}

// secureCookies reports whether cookies get the Secure flag: when
// configured, and whenever the request came over HTTPS.
func (s *Server) secureCookies(c echo.Context) bool {
	return s.cfg.SecureCookies || c.IsTLS() || c.Scheme() == "https"
}

func (s *Server) setSessionCookie(c echo.Context, token string, expires time.Time) {
	c.SetCookie(&http.Cookie{
		Name: sessionCookie, Value: token, Path: "/", Expires: expires,
		MaxAge:   int(expires.Sub(s.web.now()) / time.Second),
		HttpOnly: true, Secure: s.secureCookies(c), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(c echo.Context, name string) {
	c.SetCookie(&http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(1, 0),
		HttpOnly: true, Secure: s.secureCookies(c), SameSite: http.SameSiteLaxMode,
	})
}

// startSession signs user in: a new session (ending the browser's
// previous one: the session ID changes at every sign-in) and its cookie.
func (s *Server) startSession(c echo.Context, user *tenant.User) error {
	w := s.web
	ctx := c.Request().Context()
	if ck, err := c.Cookie(sessionCookie); err == nil && ck.Value != "" && len(ck.Value) <= 128 {
		if err := w.deps.Store.DeleteSession(ctx, w.sessionID(ck.Value)); err != nil {
			s.log.Warn("ending the previous dashboard session", "err", err)
		}
	}
	token := randomToken(32)
	now := w.now()
	sess := &tenant.Session{
		ID: w.sessionID(token), UserID: user.ID, CSRFToken: randomToken(32),
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(sessionMax),
	}
	if err := w.deps.Store.CreateSession(ctx, sess); err != nil {
		return err
	}
	s.setSessionCookie(c, token, sess.ExpiresAt)
	s.clearCookie(c, csrfCookie)
	return nil
}

// ---------------------------------------------------------------------------
// Pre-session CSRF (signed double submit)

// formToken returns the double-submit token of the sign-in and sign-up
// forms, setting the relay_csrf cookie if the request has no valid one.
func (s *Server) formToken(c echo.Context) string {
	if ck, err := c.Cookie(csrfCookie); err == nil && s.validFormToken(ck.Value) {
		return ck.Value
	}
	r := randomToken(24)
	tok := r + "." + s.formMAC(r)
	c.SetCookie(&http.Cookie{
		Name: csrfCookie, Value: tok, Path: "/", MaxAge: int((12 * time.Hour) / time.Second),
		HttpOnly: true, Secure: s.secureCookies(c), SameSite: http.SameSiteStrictMode,
	})
	return tok
}

func (s *Server) formMAC(r string) string {
	return base64.RawURLEncoding.EncodeToString(s.web.deps.Keyed.Hash([]byte("relay-form-csrf:" + r)))
}

func (s *Server) validFormToken(tok string) bool {
	r, mac, ok := strings.Cut(tok, ".")
	return ok && len(tok) <= 128 && hmac.Equal([]byte(mac), []byte(s.formMAC(r)))
}

// checkFormCSRF reports whether a pre-session form post repeats the token
// of its relay_csrf cookie.
func (s *Server) checkFormCSRF(c echo.Context) bool {
	ck, err := c.Cookie(csrfCookie)
	if err != nil || !s.validFormToken(ck.Value) {
		return false
	}
	got := c.FormValue(csrfField)
	return subtle.ConstantTimeCompare([]byte(got), []byte(ck.Value)) == 1
}

// formExpired answers a form post whose CSRF token is missing or wrong.
func (s *Server) formExpired(c echo.Context) error {
	return s.render(c, http.StatusForbidden, "message", page{
		Title: "Form expired",
		Data: messageData{
			Heading: "This form has expired",
			Text:    "For your security, forms are only valid in the browser tab that opened them. Go back, reload the page and try again.",
			Link:    "/login", LinkText: "Back to sign in",
		},
	})
}

// messageData is the content of the message page.
type messageData struct {
	Heading, Text, Link, LinkText string
}

// ---------------------------------------------------------------------------
// Pages: root, sign-in, sign-up, sign-out

// root sends a signed-in user to their home page, others to sign-in.
func (s *Server) root(c echo.Context) error {
	ws, err := s.session(c)
	if err != nil {
		return err
	}
	if ws == nil {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return c.Redirect(http.StatusSeeOther, homeOf(ws))
}

func homeOf(ws *webSession) string {
	if ws.tenant == nil {
		return "/operator"
	}
	return "/overview"
}

// authForm is the data of the sign-in and sign-up pages.
type authForm struct {
	Email, Name, Slug, Next string
	// Errors by field ("email", "password", "name", "slug"; "" for the
	// form as a whole).
	Errors map[string]string
	// RetryAfter is set when sign-in is throttled.
	RetryAfter int
	// Notice is an informational line (signed out, session expired).
	Notice string
}

// safeNext returns next if it is a local path of this site, else "".
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return ""
	}
	return next
}

func (s *Server) loginPage(c echo.Context) error {
	if ws, err := s.session(c); err != nil {
		return err
	} else if ws != nil {
		return c.Redirect(http.StatusSeeOther, homeOf(ws))
	}
	f := authForm{Next: safeNext(c.QueryParam("next"))}
	switch c.QueryParam("m") {
	case "out":
		f.Notice = "You have signed out."
	case "expired":
		f.Notice = "Your session has ended. Sign in again to continue."
	}
	return s.render(c, http.StatusOK, "login", page{Title: "Sign in", CSRF: s.formToken(c), Data: f})
}

func (s *Server) login(c echo.Context) error {
	w := s.web
	if err := parseForm(c); err != nil {
		return err
	}
	if !s.checkFormCSRF(c) {
		return s.formExpired(c)
	}
	email, _ := tenant.NormalizeEmail(c.FormValue("email"))
	password := c.FormValue("password")
	f := authForm{Email: email, Next: safeNext(c.FormValue("next")), Errors: map[string]string{}}
	if email == "" || password == "" {
		if email == "" {
			f.Errors["email"] = "Enter your email address."
		}
		if password == "" {
			f.Errors["password"] = "Enter your password."
		}
		return s.render(c, http.StatusBadRequest, "login", page{Title: "Sign in", CSRF: s.formToken(c), Data: f})
	}
	// The attempt is counted before the password is checked, so that
	// parallel guesses cannot all pass the throttle; a success gives the
	// tokens back.
	now := w.now()
	addr := loginAddrKey(s.clientIP(c))
	acct := shortHash(email)
	keys := []limitKey{
		{"login:pair:" + acct + "|" + addr, loginPerAccountAddr},
		{"login:acct:" + acct, loginPerAccount},
		{"login:addr:" + addr, loginPerAddr},
	}
	if wait := w.throttle.take(now, keys...); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		f.RetryAfter = secs
		f.Errors[""] = fmt.Sprintf("Too many sign-in attempts for this account or from your network. "+
			"For your security, sign-in is paused: try again in %s.", humanSeconds(secs))
		s.log.Warn("dashboard sign-in throttled", "email", email, "remote", s.clientIP(c))
		return s.render(c, http.StatusTooManyRequests, "login", page{Title: "Sign in", CSRF: s.formToken(c), Data: f})
	}
	ctx := c.Request().Context()
	user, err := w.deps.Store.UserByEmail(ctx, email)
	if err != nil && !errors.Is(err, tenant.ErrNotFound) {
		w.throttle.refund(now, keys...)
		return errors.Join(ErrUnavailable, err)
	}
	hash := w.dummyHash
	if user != nil {
		hash = user.PasswordHash
	}
	ok, err := w.verifyPassword(ctx, hash, password)
	if err != nil {
		w.throttle.refund(now, keys...) // never checked
		return err
	}
	if !ok || user == nil {
		f.Errors[""] = "Wrong email or password."
		return s.render(c, http.StatusUnauthorized, "login", page{Title: "Sign in", CSRF: s.formToken(c), Data: f})
	}
	w.throttle.refund(now, keys...)
	w.throttle.reset(keys[0].key)
	if auth.NeedsRehash(user.PasswordHash) {
		var h string
		herr := w.argon2(ctx, func() { h, err = auth.HashPassword(password) })
		if herr == nil && err == nil {
			if err := w.deps.Store.SetPasswordHash(ctx, user.ID, h); err != nil {
				s.log.Warn("rehashing a dashboard password", "err", err)
			}
		}
	}
	if err := s.startSession(c, user); err != nil {
		return err
	}
	next := f.Next
	switch {
	case next != "":
	case user.TenantID == "":
		next = "/operator"
	default:
		next = "/overview"
	}
	return c.Redirect(http.StatusSeeOther, next)
}

// shortHash keys a throttle bucket by an identifier of any length
// (an email) in bounded memory.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

// argon2Wait bounds the wait for a turn at argon2id: past it the request
// is answered 503 rather than queued without end.
const argon2Wait = 10 * time.Second

// argon2 runs fn, which hashes or verifies an argon2id password (19 MiB of
// memory each), at most cap(w.argon) at a time, so that parallel sign-ins
// and sign-ups cannot exhaust memory. ErrUnavailable if no turn comes
// within argon2Wait.
func (w *webState) argon2(ctx context.Context, fn func()) error {
	t := time.NewTimer(argon2Wait)
	defer t.Stop()
	select {
	case w.argon <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%w: too many sign-ins at once; try again in a few seconds", ErrUnavailable)
	}
	defer func() { <-w.argon }()
	fn()
	return nil
}

// verifyPassword checks password against an argon2id hash (w.argon2).
func (w *webState) verifyPassword(ctx context.Context, hash, password string) (bool, error) {
	if len(password) > maxPasswordLength {
		password = password[:maxPasswordLength]
	}
	var ok bool
	var verr error
	if err := w.argon2(ctx, func() { ok, verr = auth.VerifyPassword(hash, []byte(password)) }); err != nil {
		return false, err
	}
	if verr != nil {
		return false, nil // a corrupt hash signs nobody in
	}
	return ok, nil
}

func humanSeconds(n int) string {
	if n == 1 {
		return "1 second"
	}
	if n < 120 {
		return strconv.Itoa(n) + " seconds"
	}
	return strconv.Itoa((n+59)/60) + " minutes"
}

func (s *Server) signupPage(c echo.Context) error {
	if ws, err := s.session(c); err != nil {
		return err
	} else if ws != nil {
		return c.Redirect(http.StatusSeeOther, homeOf(ws))
	}
	return s.render(c, http.StatusOK, "signup", page{Title: "Create your account", CSRF: s.formToken(c), Data: authForm{}})
}

// SuggestSlug derives a tenant slug from an organisation name: lower-case
// ASCII letters and digits, other runs as one hyphen, at most 32
// characters ("" if nothing is left).
func SuggestSlug(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
		default:
			hyphen = true
		}
		if b.Len() >= 32 {
			break
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 32 {
		out = strings.Trim(out[:32], "-")
	}
	return out
}

func (s *Server) signup(c echo.Context) error {
	w := s.web
	if err := parseForm(c); err != nil {
		return err
	}
	if !s.checkFormCSRF(c) {
		return s.formExpired(c)
	}
	f := authForm{
		Name:   strings.TrimSpace(c.FormValue("name")),
		Slug:   strings.ToLower(strings.TrimSpace(c.FormValue("slug"))),
		Errors: map[string]string{},
	}
	email, emailOK := tenant.NormalizeEmail(c.FormValue("email"))
	f.Email = email
	password := c.FormValue("password")
	if f.Slug == "" {
		f.Slug = SuggestSlug(f.Name)
	}
	render := func(status int) error {
		return s.render(c, status, "signup", page{Title: "Create your account", CSRF: s.formToken(c), Data: f})
	}
	// Every attempt is counted before anything is looked up (parallel
	// sign-ups cannot all pass, and probing which emails have an account
	// is throttled too); an attempt that is refused before it reaches the
	// database, or for a taken tenant ID (public: host names), gets its
	// token back.
	now := w.now()
	ipKey := limitKey{"signup:addr:" + loginAddrKey(s.clientIP(c)), signupPerAddr}
	if wait := w.throttle.take(now, ipKey); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		f.Errors[""] = fmt.Sprintf("Too many sign-ups from your network. Try again in %s.", humanSeconds(secs))
		return render(http.StatusTooManyRequests)
	}
	counted := true
	defer func() {
		if !counted {
			w.throttle.refund(now, ipKey)
		}
	}()
	if !emailOK {
		f.Errors["email"] = "Enter a valid email address, like you@example.com."
	}
	if msg := passwordProblem(password); msg != "" {
		f.Errors["password"] = msg
	}
	switch {
	case f.Name == "":
		f.Errors["name"] = "Enter the name of your organisation or project."
	case utf8.RuneCountInString(f.Name) > 100 || !utf8.ValidString(f.Name):
		f.Errors["name"] = "Use at most 100 characters."
	}
	switch {
	case f.Slug == "":
		f.Errors["slug"] = "Choose a tenant ID: lower-case letters, digits and hyphens."
	case !tenant.ValidSlug(f.Slug):
		f.Errors["slug"] = "Use 1–32 lower-case letters, digits and inner hyphens (it becomes part of a host name)."
	case f.Slug == tenant.DefaultSlug:
		f.Errors["slug"] = fmt.Sprintf("%q is reserved. Choose another.", tenant.DefaultSlug)
	}
	if len(f.Errors) > 0 {
		counted = false
		return render(http.StatusBadRequest)
	}
	ctx := c.Request().Context()
	if _, err := s.cfg.Tenancy.Tenant(ctx, f.Slug); err == nil {
		counted = false
		f.Errors["slug"] = fmt.Sprintf("%q is taken. Choose another.", f.Slug)
		return render(http.StatusConflict)
	} else if !errors.Is(err, tenant.ErrNotFound) {
		counted = false
		return err
	}
	// The same words whether the email has an account or the account
	// could not be made for another reason; the attempt stays counted.
	accountExists := func() error {
		f.Errors["email"] = "We could not create an account with this email. If you already have one, sign in instead."
		return render(http.StatusConflict)
	}
	if _, err := w.deps.Store.UserByEmail(ctx, email); err == nil {
		return accountExists()
	} else if !errors.Is(err, tenant.ErrNotFound) {
		counted = false
		return errors.Join(ErrUnavailable, err)
	}
	var user *tenant.User
	var uerr error
	if err := w.argon2(ctx, func() { user, uerr = NewUser(email, password, "") }); err != nil {
		counted = false
		return err
	}
	if uerr != nil {
		counted = false
		return uerr
	}
	t, err := s.cfg.Tenancy.CreateTenant(ctx, email, f.Slug, f.Name)
	switch {
	case errors.Is(err, tenant.ErrConflict):
		counted = false
		f.Errors["slug"] = fmt.Sprintf("%q is taken. Choose another.", f.Slug)
		return render(http.StatusConflict)
	case errors.Is(err, tenant.ErrInvalid):
		counted = false
		f.Errors["slug"] = "Use 1–32 lower-case letters, digits and inner hyphens."
		return render(http.StatusBadRequest)
	case err != nil:
		counted = false
		return err
	}
	user.TenantID, user.Role = t.ID, tenant.RoleOwner
	if err := w.deps.Store.CreateUser(ctx, user); err != nil {
		// The tenant stays, without an owner (an operator can see it).
		s.log.Error("dashboard sign-up: tenant created but its owner was not", "tenant", t.Slug, "err", err)
		if errors.Is(err, tenant.ErrConflict) {
			return accountExists()
		}
		return err
	}
	s.log.Info("dashboard sign-up", "tenant", t.Slug, "email", email)
	if err := s.startSession(c, user); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/overview?welcome=1")
}

// logout ends the session (a form post with the session's CSRF token).
func (s *Server) logout(c echo.Context) error {
	if err := parseForm(c); err != nil {
		return err
	}
	ws, err := s.session(c)
	if err != nil {
		return err
	}
	if ws != nil {
		if !sessionCSRFOK(c, ws) {
			return s.formExpiredSession(c)
		}
		if err := s.web.deps.Store.DeleteSession(c.Request().Context(), ws.sess.ID); err != nil {
			return errors.Join(ErrUnavailable, err)
		}
		s.api.notify() // its live watches end
	}
	s.clearCookie(c, sessionCookie)
	return c.Redirect(http.StatusSeeOther, "/login?m=out")
}

// formExpiredSession answers a signed-in form post without the session's
// CSRF token.
func (s *Server) formExpiredSession(c echo.Context) error {
	return s.render(c, http.StatusForbidden, "message", page{
		Title: "Form expired",
		Data: messageData{
			Heading: "This request was refused",
			Text:    "It did not carry this session's security token. If you sent it from the dashboard, reload the page and try again.",
			Link:    "/", LinkText: "Back to the dashboard",
		},
	})
}

// requirePage lets signed-in users through to the pages and sends others
// to sign-in (and back here afterwards).
func (s *Server) requirePage(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ws, err := s.session(c)
		if err != nil {
			return err
		}
		if ws == nil {
			m := ""
			if _, err := c.Cookie(sessionCookie); err == nil {
				m = "&m=expired"
			}
			return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI())+m)
		}
		if unsafeMethod(c.Request().Method) {
			if err := parseForm(c); err != nil {
				return err
			}
			if !sessionCSRFOK(c, ws) {
				return s.formExpiredSession(c)
			}
		}
		return next(c)
	}
}
