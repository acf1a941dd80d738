package services_test

// Browser end-to-end tests of the dashboard: a real headless Chromium,
// driven with chromedp, against a real all-in-one Server, with real MQTT
// clients (paho). One browser serves every user; each user has their own
// browser context (cookies), as separate people would.
//
// The flow: sign up → create an app → issue a credential (the secret is
// read from the page) → an MQTT client connects with it and subscribes →
// it shows in the clients list → a message published from the console
// reaches it (and the live watch) → it is kicked from the page and
// disconnected. Then: retained messages set, viewed and deleted in the
// page; the ACL editor's validation error; sign-in throttling; a user of
// one tenant cannot reach another's pages or data; an operator suspends a
// tenant and its client is disconnected. Screenshots of the key pages go
// to artifacts/screenshots/ at the repository root.
//
// Chromium: $RELAY_CHROMIUM, else chromium (Debian; ./scripts/deps.sh
// installs it), chromium-browser, google-chrome. Without one the test is
// skipped with a log line; CI has it.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserWait bounds each wait for something the page must show.
const browserWait = 15 * time.Second

// screenshotDir is where the screenshots go, relative to this package.
var screenshotDir = filepath.Join("..", "artifacts", "screenshots")

// chromiumPath finds a Chromium binary or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RELAY_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RELAY_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium found (set RELAY_CHROMIUM or run ./scripts/deps.sh chromium): skipping the browser tests")
	return ""
}

// browser is one headless Chromium for the whole test.
type browser struct {
	ctx  context.Context // the browser's first tab; parent of the others
	base string

	mu       sync.Mutex
	problems []string // uncaught exceptions and CSP violations, any tab
}

// startBrowser launches Chromium with the flags an offline machine needs
// (without the networking ones it hangs on start) and a throw-away
// profile; it is closed when the test ends.
func startBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// No smooth scrolling or animations: a click lands where the
		// element is, not where it was a frame ago.
		chromedp.Flag("force-prefers-reduced-motion", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, whose life is then bound to
	// the context it ran with: so not a context with a timeout, but a
	// timer that cancels ctx if the start hangs.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting Chromium: %v", err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("starting Chromium: no answer in 30 s")
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{ctx: ctx, base: base}
}

// tab is one user's tab, in its own browser context (own cookies).
type tab struct {
	t    *testing.T
	b    *browser
	ctx  context.Context
	name string
}

func (b *browser) newTab(t *testing.T, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, b: b, ctx: ctx, name: name}
	// As for the browser: the first action opens the tab, bound to the
	// context it runs with, so it runs with ctx itself.
	opened := make(chan error, 1)
	go func() { opened <- chromedp.Do(ctx) }()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("new tab %s: %v", name, err)
		}
	case <-time.After(browserWait):
		cancel()
		t.Fatalf("new tab %s: no answer in %v", name, browserWait)
	}
	tb.do("set the viewport", chromedp.EmulateViewport(1440, 900))
	// Watch the console for what must never happen: uncaught exceptions
	// and content-security-policy violations (an inline script or style
	// that slipped in).
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s: %s (%s:%d)", name, m.Text, m.URL, m.Line+1))
				b.mu.Unlock()
			}
		}
	}()
	return tb
}

// use makes the tab report to t (a subtest).
func (tb *tab) use(t *testing.T) *tab {
	c := *tb
	c.t = t
	return &c
}

// do runs actions, each step bounded by browserWait; on failure it saves a
// screenshot and stops the test.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.failShot()
		tb.t.Fatalf("%s (%s): %v", what, tb.name, err)
	}
}

// navigate loads a page and returns its HTTP status.
func (tb *tab) navigate(path string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(tb.b.base+path))
	if err != nil {
		tb.failShot()
		tb.t.Fatalf("navigate %s (%s): %v", path, tb.name, err)
	}
	return res.Status
}

// submit clicks a button that submits a form and returns the status of
// the page it loads.
func (tb *tab) submit(sel string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		tb.failShot()
		tb.t.Fatalf("submit %s (%s): %v", sel, tb.name, err)
	}
	return res.Status
}

// waitJS waits until a JavaScript expression is truthy in the page.
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		tb.failShot()
		tb.t.Fatalf("waiting until %s (%s): %v", what, tb.name, err)
	}
}

// text returns the text of the element with this CSS selector.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.failShot()
		tb.t.Fatalf("text of %s (%s): %v", sel, tb.name, err)
	}
	return strings.TrimSpace(s)
}

// eval evaluates JavaScript (awaiting a promise) and returns a string.
func (tb *tab) eval(expr string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %q (%s): %v", expr, tb.name, err)
	}
	return s
}

// shot saves a full-page PNG screenshot as artifacts/screenshots/<name>.png.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	// From the top, so that the sticky sidebar sits where it does on
	// screen.
	var buf []byte
	err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	if err == nil {
		buf, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(screenshotDir, name+".png"), buf, 0o644)
	}
	if err != nil {
		tb.t.Errorf("screenshot %s: %v", name, err)
	}
}

// failShot saves what the page looked like when a step failed.
func (tb *tab) failShot() {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	if buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		name := "failed-" + strings.NewReplacer("/", "-", " ", "-").Replace(tb.t.Name()) + ".png"
		_ = os.WriteFile(filepath.Join(screenshotDir, name), buf, 0o644)
		tb.t.Logf("screenshot of the failure: %s", filepath.Join(screenshotDir, name))
	}
}

// confirm answers the page's confirmation dialog with its OK button.
func (tb *tab) confirm() {
	tb.t.Helper()
	tb.do("confirm", chromedp.WaitVisible(chromedp.ID("confirm-ok")), chromedp.Click(chromedp.ID("confirm-ok")))
}

// signupUI signs up through the page; the tenant slug is the one the page
// suggests from the organisation name.
func (tb *tab) signupUI(email, org, wantSlug string) {
	tb.t.Helper()
	tb.navigate("/signup")
	tb.do("fill in the sign-up form",
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), testPassword),
		chromedp.SendKeys(chromedp.ID("name"), org))
	if slug, _ := chromedp.Run(tb.ctx, chromedp.Value(chromedp.ID("slug"))); slug != wantSlug {
		tb.t.Errorf("suggested tenant ID %q, want %q", slug, wantSlug)
	}
	if st := tb.submit("#signup-submit"); st != http.StatusOK {
		tb.failShot()
		tb.t.Fatalf("sign-up landed on a %d page", st)
	}
	tb.do("wait for the overview", chromedp.WaitVisible(chromedp.ID("connect")))
}

// credentialUI issues a credential of the app whose page is open and
// returns the MQTT username and the password, read from the page.
func (tb *tab) credentialUI() (user, password string) {
	tb.t.Helper()
	tb.do("issue a credential", chromedp.Click(chromedp.ID("issue-credential")), chromedp.WaitVisible(chromedp.ID("secret-password")))
	return tb.text("#secret-username"), tb.text("#secret-password")
}

func TestDashboardBrowser(t *testing.T) {
	chromiumPath(t) // skip early, before starting a server
	start := time.Now()
	e := startDashboard(t)
	b := startBrowser(t, e.base)
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("page error: %s", p)
		}
		t.Logf("browser tests took %v; screenshots in %s", time.Since(start).Round(100*time.Millisecond), screenshotDir)
	})

	const (
		email = "ann@acme.example"
		org   = "Acme Sensors"
		slug  = "acme-sensors"
	)
	owner := b.newTab(t, "owner")
	var mqttUser, mqttPass string

	t.Run("flow", func(t *testing.T) {
		p := owner.use(t)
		p.navigate("/signup")
		p.do("signup form", chromedp.WaitVisible(chromedp.ID("email")))
		p.shot("01-signup")
		p.signupUI(email, org, slug)
		if host := p.text("#endpoint"); !strings.Contains(host, slug+".relay.localhost") {
			t.Errorf("endpoint %q, want the tenant host name", host)
		}

		// Create an app.
		p.navigate("/apps")
		p.do("wait for the empty app list", chromedp.WaitVisible(chromedp.CSS("#apps-list .empty")))
		p.do("create an app",
			chromedp.SendKeys(chromedp.ID("app-name"), "sensors"),
			chromedp.Click(chromedp.ID("create-app")),
			chromedp.WaitVisible(chromedp.ID("issue-credential")),
			chromedp.WaitVisible(chromedp.CSS("#creds-list .empty")))

		// Issue a credential: the secret is on the page once.
		mqttUser, mqttPass = p.credentialUI()
		if !strings.HasSuffix(mqttUser, "@"+slug) || len(mqttPass) < 20 {
			t.Fatalf("credential %q / %q: want <user>@%s and a generated password", mqttUser, mqttPass, slug)
		}
		p.waitJS("the credential is listed", `document.querySelector("#creds-list tr[data-username]") !== null`)
		p.shot("03-credential-shown-once")
		if cmd := p.text("#secret-cmd"); !strings.Contains(cmd, mqttPass) || !strings.Contains(cmd, mqttUser) {
			t.Errorf("ready-to-run command %q lacks the credential", cmd)
		}
		p.do("dismiss the secret", chromedp.Click(chromedp.ID("secret-dismiss")))
		if strings.Contains(p.eval(`document.body.innerHTML`), mqttPass) {
			t.Error("the password is still in the page after dismissing it")
		}
		p.navigate("/apps/sensors")
		p.waitJS("credentials listed again", `document.querySelector("#creds-list tr[data-username]") !== null`)
		if strings.Contains(p.eval(`document.documentElement.outerHTML`), mqttPass) {
			t.Error("the password is rendered again on reload")
		}

		// A real MQTT client connects with it and subscribes.
		lost := make(chan error, 1)
		in := newInbox()
		dev := connect(t, e.addr, "sensor-1", withLogin(mqttUser, mqttPass), onLost(lost))
		subscribe(t, dev, "devices/#", 1, in)

		// It shows in the clients list, with its subscription.
		p.navigate("/clients")
		p.do("the client shows up", chromedp.WaitVisible(chromedp.CSS(`tr[data-client="sensor-1"]`)))
		row := p.text(`tr[data-client="sensor-1"]`)
		for _, want := range []string{"sensor-1", strings.TrimSuffix(mqttUser, "@"+slug), "devices/#", "3.1.1", "127.0.0.1"} {
			if !strings.Contains(row, want) {
				t.Errorf("client row %q lacks %q", row, want)
			}
		}
		p.shot("05-clients")

		// The overview counts it.
		p.navigate("/overview")
		p.waitJS("the overview counts the client", `document.getElementById("stat-clients").textContent.trim() === "1"`)
		p.waitJS("the commands use the credential", `document.querySelector(".js-user").textContent === `+jsString(mqttUser))
		p.shot("02-overview")

		// Publish from the console, with a live watch open: the device and
		// the watch get it.
		p.navigate("/console")
		p.do("start a live watch",
			chromedp.WaitVisible(chromedp.ID("watch-filter")),
			chromedp.SetValue(chromedp.ID("watch-filter"), "devices/#"),
			chromedp.Click(chromedp.ID("watch-toggle")))
		p.waitJS("the watch is open", `document.getElementById("watch-state-text").textContent.startsWith("Watching devices/#")`)
		payload := `{"led": "on", "level": 3}`
		p.do("publish",
			chromedp.SendKeys(chromedp.ID("pub-topic"), "devices/sensor-1/cmd"),
			chromedp.SetValue(chromedp.ID("pub-payload"), payload),
			chromedp.SetValue(chromedp.ID("pub-qos"), "1"),
			chromedp.Click(chromedp.ID("pub-submit")))
		p.waitJS("the publish is confirmed", `document.getElementById("pub-result").textContent.includes("Published")`)
		in.waitMessage(t, "devices/sensor-1/cmd", payload, waitTimeout)
		p.do("the watch shows it", chromedp.WaitVisible(chromedp.CSS(`.msg[data-topic="devices/sensor-1/cmd"]`)))
		if body := p.text(`.msg[data-topic="devices/sensor-1/cmd"] .msg-body`); !strings.Contains(body, `"level": 3`) {
			t.Errorf("watched message body %q", body)
		}
		if res := p.text("#pub-result"); strings.Contains(res, "no subscriber") {
			t.Errorf("publish result %q: the device is subscribed", res)
		}
		// The device publishes too; the watch sees it.
		publish(t, dev, "devices/sensor-1/temp", 0, false, "21.5")
		p.do("the watch shows the device's message", chromedp.WaitVisible(chromedp.CSS(`.msg[data-topic="devices/sensor-1/temp"]`)))
		p.shot("06-console")

		// Kick it from the clients page: it is disconnected.
		p.navigate("/clients")
		p.do("kick", chromedp.WaitVisible(chromedp.CSS(`[data-kick="sensor-1"]`)), chromedp.Click(chromedp.CSS(`[data-kick="sensor-1"]`)))
		p.do("the confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
		p.shot("07-kick-confirm")
		p.confirm()
		waitLost(t, lost, "kicked client", waitTimeout)
		p.do("the client leaves the list", chromedp.WaitNotPresent(chromedp.CSS(`tr[data-client="sensor-1"]`)))
	})

	t.Run("retained", func(t *testing.T) {
		p := owner.use(t)
		p.navigate("/retained")
		p.do("the retained browser", chromedp.WaitVisible(chromedp.CSS("#retained-list .empty")))
		const topic = "devices/sensor-1/config"
		p.do("set a retained message",
			chromedp.SendKeys(chromedp.ID("set-topic"), topic),
			chromedp.SetValue(chromedp.ID("set-payload"), `{"interval":60,"unit":"s"}`),
			chromedp.Click(chromedp.ID("set-submit")),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-topic="`+topic+`"]`)))
		p.waitJS("the viewer shows it", `document.getElementById("viewer-title").textContent === `+jsString(topic))
		p.waitJS("the JSON view is pretty", `document.getElementById("payload-json").textContent.includes('\n  "interval": 60')`)
		p.shot("08-retained")
		p.do("hex view", chromedp.Click(chromedp.ID("tab-hex")), chromedp.WaitVisible(chromedp.ID("payload-hex")))
		if hex := p.text("#payload-hex"); !strings.Contains(hex, "7b 22 69 6e") {
			t.Errorf("hex view %q", hex)
		}
		// A new subscriber gets it, retained.
		in := newInbox()
		c := connect(t, e.addr, "sensor-2", withLogin(mqttUser, mqttPass))
		subscribe(t, c, topic, 1, in)
		if got := in.wait(t, 1); got[0].Payload != `{"interval":60,"unit":"s"}` || !got[0].Retained {
			t.Errorf("subscriber got %v, want the retained message", got)
		}
		disconnect(c)
		p.do("delete it", chromedp.Click(chromedp.ID("viewer-delete")))
		p.confirm()
		p.do("the list is empty again", chromedp.WaitVisible(chromedp.CSS("#retained-list .empty")))
	})

	t.Run("acl", func(t *testing.T) {
		p := owner.use(t)
		p.navigate("/apps/sensors")
		p.do("the rules", chromedp.WaitVisible(chromedp.CSS(`#acl-list tr[data-filter="#"]`)))
		p.do("an invalid filter",
			chromedp.SetValue(chromedp.ID("acl-filter"), "devices/#/temp"),
			chromedp.Click(chromedp.ID("acl-add")),
			chromedp.WaitVisible(chromedp.ID("acl-filter-error")))
		if msg := p.text("#acl-filter-error"); !strings.Contains(msg, "# must be a whole level and the last one") {
			t.Errorf("filter error %q", msg)
		}
		if p.eval(`document.getElementById("acl-filter").getAttribute("aria-invalid") || ""`) != "true" {
			t.Error("the invalid field is not marked aria-invalid")
		}
		p.shot("09-acl-validation")
		p.do("a valid deny rule",
			chromedp.SetValue(chromedp.ID("acl-filter"), "devices/+/secret"),
			chromedp.SetValue(chromedp.ID("acl-effect"), "deny"),
			chromedp.SetValue(chromedp.ID("acl-action"), "publish"),
			chromedp.Click(chromedp.ID("acl-add")),
			chromedp.WaitVisible(chromedp.CSS(`#acl-list tr[data-filter="devices/+/secret"]`)))
		p.waitJS("the error is gone", `document.getElementById("acl-filter-error").hidden`)
		p.do("remove it",
			chromedp.Click(chromedp.CSS(`#acl-list tr[data-filter="devices/+/secret"] button`)))
		p.confirm()
		p.do("it is gone", chromedp.WaitNotPresent(chromedp.CSS(`#acl-list tr[data-filter="devices/+/secret"]`)))

		// A second credential: rotate it (the old password stops working,
		// the new one works), then revoke it (its client is disconnected).
		user2, pass2 := p.credentialUI()
		plain2 := strings.TrimSuffix(user2, "@"+slug)
		p.do("dismiss", chromedp.Click(chromedp.ID("secret-dismiss")))
		p.do("rotate", chromedp.WaitVisible(chromedp.CSS(`[data-rotate="`+plain2+`"]`)), chromedp.Click(chromedp.CSS(`[data-rotate="`+plain2+`"]`)))
		p.confirm()
		p.waitJS("the new password is shown", `document.getElementById("secret-title").textContent.startsWith("New password") && !document.getElementById("secret-panel").hidden`)
		newPass := p.text("#secret-password")
		if newPass == pass2 || p.text("#secret-username") != user2 {
			t.Fatalf("rotation showed %q / %q", p.text("#secret-username"), newPass)
		}
		waitUntil(t, "the old password is refused", func() bool {
			c, tok := tryConnect(t, e.addr, "rotated-old", withLogin(user2, pass2))
			if tok.Error() == nil {
				disconnect(c)
				return false
			}
			return true
		})
		lost := make(chan error, 1)
		connect(t, e.addr, "rotated-new", withLogin(user2, newPass), onLost(lost))
		p.do("dismiss", chromedp.Click(chromedp.ID("secret-dismiss")))
		p.do("revoke", chromedp.Click(chromedp.CSS(`[data-revoke="`+plain2+`"]`)))
		p.confirm()
		p.waitJS("it shows revoked", `document.querySelector('tr[data-username="`+plain2+`"]').textContent.includes("Revoked")`)
		waitLost(t, lost, "client of the revoked credential", 2*liveChange)
		// The API key: shown once too.
		p.do("create an API key", chromedp.Click(chromedp.ID("create-key")), chromedp.WaitVisible(chromedp.ID("secret-key")))
		if key := p.text("#secret-key"); !strings.HasPrefix(key, "rk_") {
			t.Errorf("API key %q", key)
		}
		p.do("dismiss", chromedp.Click(chromedp.ID("secret-dismiss")))
		p.waitJS("the key is listed", `document.querySelector("#keys-list [data-revoke-key]") !== null`)
		p.waitJS("as a publish key", `document.getElementById("keys-list").textContent.includes("Publish")`)
		// An admin key: chosen, confirmed, shown as such.
		p.do("choose the admin scope", chromedp.SetValue(chromedp.ID("key-scope"), "admin"), chromedp.Click(chromedp.ID("create-key")))
		p.confirm()
		p.do("the admin key", chromedp.WaitVisible(chromedp.ID("secret-key")))
		p.do("dismiss", chromedp.Click(chromedp.ID("secret-dismiss")))
		p.waitJS("both keys are listed, one admin", `document.querySelectorAll("#keys-list [data-revoke-key]").length === 2 && document.getElementById("keys-list").textContent.includes("Admin")`)
		p.shot("04-app")
		p.navigate("/apps")
		p.do("the app list", chromedp.WaitVisible(chromedp.CSS(`.app-tile[data-app="sensors"]`)))
		p.shot("03-apps")
	})

	t.Run("usage", func(t *testing.T) {
		p := owner.use(t)
		p.navigate("/usage")
		p.do("the charts", chromedp.WaitVisible(chromedp.CSS("#c-conn svg, #c-conn .chart-empty")))
		p.shot("10-usage")
	})

	t.Run("login-throttle", func(t *testing.T) {
		p := b.newTab(t, "attacker")
		p.navigate("/login")
		for i := range 5 {
			p.do("wrong password",
				chromedp.WaitVisible(chromedp.ID("password")),
				chromedp.SetValue(chromedp.ID("email"), email),
				chromedp.SetValue(chromedp.ID("password"), fmt.Sprintf("wrong password %d", i)))
			if st := p.submit("#login-submit"); st != http.StatusUnauthorized {
				t.Fatalf("wrong password #%d: %d, want 401", i+1, st)
			}
		}
		p.do("the right one, too late",
			chromedp.SetValue(chromedp.ID("email"), email),
			chromedp.SetValue(chromedp.ID("password"), testPassword))
		if st := p.submit("#login-submit"); st != http.StatusTooManyRequests {
			t.Fatalf("sixth attempt: %d, want 429", st)
		}
		if msg := p.text("#form-error"); !strings.Contains(msg, "Too many sign-in attempts") || !strings.Contains(msg, "try again in") {
			t.Errorf("throttled message %q", msg)
		}
		p.waitJS("the button counts down", `document.getElementById("login-submit").disabled`)
		p.shot("11-login-throttled")
	})

	t.Run("cross-tenant", func(t *testing.T) {
		bob := b.newTab(t, "bob")
		bob.signupUI("bob@farm.example", "Bob's Farm", "bob-s-farm")
		bob.navigate("/apps")
		bob.do("create an app",
			chromedp.WaitVisible(chromedp.ID("app-name")),
			chromedp.SendKeys(chromedp.ID("app-name"), "barn"),
			chromedp.Click(chromedp.ID("create-app")),
			chromedp.WaitVisible(chromedp.ID("issue-credential")))
		bobUser, bobPass := bob.credentialUI()
		lost := make(chan error, 1)
		connect(t, e.addr, "barn-door", withLogin(bobUser, bobPass), onLost(lost))

		p := owner.use(t)
		if st := p.navigate("/apps/barn"); st != http.StatusNotFound {
			t.Errorf("Ann opens Bob's app page: %d, want 404", st)
		}
		p.do("the not-found page", chromedp.WaitVisible(chromedp.CSS(".empty-lg")))
		p.shot("12-cross-tenant-404")
		p.navigate("/clients")
		p.do("Ann's clients", chromedp.WaitVisible(chromedp.CSS("#clients-list .empty, #clients-list table")))
		if strings.Contains(p.text("#clients-list"), "barn-door") {
			t.Error("Ann's clients page shows Bob's client")
		}
		user := strings.TrimSuffix(bobUser, "@bob-s-farm")
		for _, req := range []string{
			`DELETE /api/v1/clients/barn-door`,
			`POST /api/v1/credentials/` + user + `/rotate`,
			`DELETE /api/v1/credentials/` + user,
			`GET /api/v1/credentials?app=barn`,
		} {
			method, path, _ := strings.Cut(req, " ")
			st := p.eval(`fetch(` + jsString(path) + `, {method: ` + jsString(method) + `, headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}}).then(r => String(r.status))`)
			if st != "404" {
				t.Errorf("Ann's page: %s → %s, want 404", req, st)
			}
		}
		stillConnected(t, lost, "Bob's client after Ann's attempts")
		connect(t, e.addr, "barn-door-2", withLogin(bobUser, bobPass)) // the credential still works
	})

	t.Run("operator", func(t *testing.T) {
		if _, err := e.srv.Control().CreateUser(opCtx(t), "ops@relay.example", testPassword, ""); err != nil {
			t.Fatalf("create operator: %v", err)
		}
		lost := make(chan error, 1)
		connect(t, e.addr, "sensor-3", withLogin(mqttUser, mqttPass), onLost(lost))

		op := b.newTab(t, "operator")
		op.navigate("/login")
		op.do("sign in",
			chromedp.WaitVisible(chromedp.ID("email")),
			chromedp.SendKeys(chromedp.ID("email"), "ops@relay.example"),
			chromedp.SendKeys(chromedp.ID("password"), testPassword))
		if st := op.submit("#login-submit"); st != http.StatusOK {
			t.Fatalf("operator sign-in landed on a %d page", st)
		}
		op.do("the tenants", chromedp.WaitVisible(chromedp.CSS(`[data-suspend="`+slug+`"]`)))
		op.waitJS("health is shown", `document.getElementById("op-health").textContent !== "–"`)
		op.do("suspend", chromedp.Click(chromedp.CSS(`[data-suspend="`+slug+`"]`)))
		op.confirm()
		waitLost(t, lost, "client of the suspended tenant", 2*liveChange)
		op.do("the tenant shows suspended", chromedp.WaitVisible(chromedp.CSS(`[data-resume="`+slug+`"]`)))
		op.shot("13-operator")
		// Its credentials no longer work.
		_, tok := tryConnect(t, e.addr, "sensor-4", withLogin(mqttUser, mqttPass))
		if tok.Error() == nil {
			t.Error("a client of the suspended tenant connected")
		}
		// The owner sees why.
		p := owner.use(t)
		p.navigate("/overview")
		p.do("the suspension banner", chromedp.WaitVisible(chromedp.CSS(".banner-err")))
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "<", `\u003c`)
	return `"` + r.Replace(s) + `"`
}
