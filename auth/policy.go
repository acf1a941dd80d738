package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	gormadapter "github.com/casbin/gorm-adapter/v3"
	"gorm.io/gorm"

	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

// Subject prefixes. A policy subject is one of these followed by a name
// that passes tenant.ValidName.
const (
	// CredentialPrefix names a credential by its username: "cred:<username>".
	CredentialPrefix = "cred:"
	// AppPrefix names an app: "app:<name>".
	AppPrefix = "app:"
	// RolePrefix names a role: "role:<name>".
	RolePrefix = "role:"
)

// CredentialSubject returns the subject of the credential with this
// username.
func CredentialSubject(username string) string { return CredentialPrefix + username }

// AppSubject returns the subject of the app with this name.
func AppSubject(name string) string { return AppPrefix + name }

// RoleSubject returns the subject of the role with this name.
func RoleSubject(name string) string { return RolePrefix + name }

// ValidateSubject reports whether s is "cred:<username>", "app:<name>" or
// "role:<name>" with a valid name. Errors wrap tenant.ErrInvalid.
func ValidateSubject(s string) error {
	kind, name, ok := strings.Cut(s, ":")
	if !ok || (kind+":" != CredentialPrefix && kind+":" != AppPrefix && kind+":" != RolePrefix) || !tenant.ValidName(name) {
		return fmt.Errorf("%w: subject %q: want cred:<username>, app:<name> or role:<name>", tenant.ErrInvalid, s)
	}
	return nil
}

// SubjectRule is a rule with the subject it is given to.
type SubjectRule struct {
	// Subject is "cred:<username>", "app:<name>" or "role:<name>".
	Subject string `json:"subject"`
	Rule
}

// policyModel is the Casbin model: RBAC with domains, the domain being the
// tenant slug. A request is (subject, tenant, topic or filter, "publish" or
// "subscribe"); a policy line is (subject, tenant, filter, "publish",
// "subscribe" or "pubsub", "allow" or "deny"); a grouping line
// (member, group, tenant) links a credential to its app, or a credential,
// app or role to a role. Deny beats allow, and nothing is allowed without
// a rule. mqttMatch applies the MQTT ACL semantics of RuleSet.
const policyModel = `
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act, eft

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.dom == p.dom && g(r.sub, p.sub, r.dom) && (p.act == r.act || p.act == "pubsub") && mqttMatch(r.sub, r.act, r.obj, p.obj, p.eft)
`

// Policies is the ACL policy store: Casbin rules with domains, persisted in
// the casbin_rule table through the GORM adapter and held in memory. It is
// used by the control plane (dashboard, HTTP API, auth service), never on
// an edge's message path: edges receive RulesFor a credential and Compile
// them. It is safe for concurrent use.
//
// The casbin_rule table is created by a migration (002_casbin_rule), never
// by the adapter: id (database-generated primary key), ptype and v0…v5
// (TEXT, not null, empty by default), and the unique index idx_casbin_rule on
// (ptype, v0, v1, v2, v3, v4, v5) that the adapter's inserts rely on.
type Policies struct {
	log *slog.Logger

	// mu guards e: Casbin's ContextEnforcer is not safe for concurrent
	// use. Writers hold it across their database round trip.
	mu sync.RWMutex
	e  casbin.IEnforcerContext
}

// NewPolicies loads every policy from db's casbin_rule table, which must
// exist (it is created by a migration: automatic migration is turned off on
// a session of db, db itself is left unchanged). The initial load ignores
// ctx beyond checking it first (Casbin loads without a context); use Reload
// for a bounded load. log may be nil (slog.Default).
func NewPolicies(ctx context.Context, db *gorm.DB, log *slog.Logger) (*Policies, error) {
	if db == nil {
		return nil, errors.New("auth: policies: nil database")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: policies: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	// TurnOffAutoMigrate overwrites *db; give it a session of our own so the
	// caller's handle does not carry the adapter's context value. The
	// adapter's queries replace this context with the caller's ctx.
	adb := db.WithContext(context.WithoutCancel(ctx))
	gormadapter.TurnOffAutoMigrate(adb)
	a, err := gormadapter.NewAdapterByDB(adb)
	if err != nil {
		return nil, fmt.Errorf("auth: policy adapter: %w", err)
	}
	m, err := model.NewModelFromString(policyModel)
	if err != nil {
		return nil, fmt.Errorf("auth: policy model: %w", err)
	}
	e, err := casbin.NewContextEnforcer(m, a, false)
	if err != nil {
		return nil, fmt.Errorf("auth: load policies (is the casbin_rule migration applied?): %w", err)
	}
	e.AddFunction("mqttMatch", mqttMatch)
	p := &Policies{log: log.With("component", "policies"), e: e}
	p.log.Debug("policies loaded", "rules", p.count())
	return p, nil
}

// count returns the number of policy and grouping lines in memory.
func (p *Policies) count() int {
	pol, _ := p.e.GetPolicy()
	grp, _ := p.e.GetGroupingPolicy()
	return len(pol) + len(grp)
}

// Reload replaces the policies in memory with the database's, after
// another process changed them.
func (p *Policies) Reload(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.e.LoadPolicyCtx(ctx); err != nil {
		return fmt.Errorf("auth: reload policies: %w", err)
	}
	p.log.Debug("policies reloaded", "rules", p.count())
	return nil
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

// AddRule gives r to subject in tenant. Adding a rule the subject already
// has does nothing. Errors: tenant.ErrInvalid (slug, subject, rule), or a
// database error.
func (p *Policies) AddRule(ctx context.Context, tenantSlug, subject string, r Rule) error {
	if err := validSlugSubject(tenantSlug, subject); err != nil {
		return err
	}
	if err := ValidateRule(r); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.e.AddPolicyCtx(ctx, policyLine(tenantSlug, subject, r)); err != nil {
		return fmt.Errorf("auth: add rule %s %s: %w", subject, r.Filter, err)
	}
	p.log.Debug("rule added", "tenant", tenantSlug, "subject", subject, "effect", r.Effect, "action", r.Action, "filter", r.Filter)
	return nil
}

// RemoveRule takes r from subject in tenant. The filter is not validated,
// so that a rule stored under older validation can still be removed.
// Errors: tenant.ErrInvalid, tenant.ErrNotFound if the subject does not
// have the rule, or a database error.
func (p *Policies) RemoveRule(ctx context.Context, tenantSlug, subject string, r Rule) error {
	if err := validSlugSubject(tenantSlug, subject); err != nil {
		return err
	}
	if (r.Effect != Allow && r.Effect != Deny) || r.Action == 0 || r.Action&^PubSub != 0 {
		return fmt.Errorf("%w: rule %v %v", tenant.ErrInvalid, r.Effect, r.Action)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ok, err := p.e.RemovePolicyCtx(ctx, policyLine(tenantSlug, subject, r))
	if err != nil {
		return fmt.Errorf("auth: remove rule %s %s: %w", subject, r.Filter, err)
	}
	if !ok {
		return fmt.Errorf("auth: rule %s %s %s %s: %w", subject, r.Effect, r.Action, r.Filter, tenant.ErrNotFound)
	}
	p.log.Debug("rule removed", "tenant", tenantSlug, "subject", subject, "effect", r.Effect, "action", r.Action, "filter", r.Filter)
	return nil
}

// ListRules returns every rule of the tenant, by subject (a subject's rules
// in the order they were added). Errors: tenant.ErrInvalid for a bad slug.
func (p *Policies) ListRules(ctx context.Context, tenantSlug string) ([]SubjectRule, error) {
	if !tenant.ValidSlug(tenantSlug) {
		return nil, fmt.Errorf("%w: tenant slug %q", tenant.ErrInvalid, tenantSlug)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: list rules: %w", err)
	}
	p.mu.RLock()
	lines, err := p.e.GetFilteredPolicy(1, tenantSlug)
	p.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("auth: list rules: %w", err)
	}
	out := make([]SubjectRule, 0, len(lines))
	for _, l := range lines {
		if r, ok := p.parseLine(l); ok {
			out = append(out, SubjectRule{Subject: l[0], Rule: r})
		}
	}
	slices.SortStableFunc(out, func(a, b SubjectRule) int { return cmp.Compare(a.Subject, b.Subject) })
	return out, nil
}

// RulesFor returns the effective rules of a credential: its own, those of
// its app (app, if not empty, and any app it is linked to) and those of
// every role any of them has, directly or through other roles, within the
// tenant. Each rule appears once. Compile the result for a connection.
// Errors: tenant.ErrInvalid for a bad slug, username or app name.
func (p *Policies) RulesFor(ctx context.Context, tenantSlug, username, app string) ([]Rule, error) {
	subjects := []string{CredentialSubject(username)}
	if app != "" {
		subjects = append(subjects, AppSubject(app))
	}
	for _, s := range subjects {
		if err := validSlugSubject(tenantSlug, s); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: rules for %s: %w", username, err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []Rule
	seen := map[Rule]bool{}
	for _, s := range subjects {
		lines, err := p.e.GetImplicitPermissionsForUser(s, tenantSlug)
		if err != nil {
			return nil, fmt.Errorf("auth: rules for %s: %w", s, err)
		}
		for _, l := range lines {
			if r, ok := p.parseLine(l); ok && !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------

// LinkCredential makes the app's rules (and roles) apply to the credential
// with this username. Linking again does nothing. Errors: tenant.ErrInvalid,
// or a database error.
func (p *Policies) LinkCredential(ctx context.Context, tenantSlug, username, app string) error {
	return p.link(ctx, tenantSlug, CredentialSubject(username), AppSubject(app))
}

// UnlinkCredential undoes LinkCredential. Errors: tenant.ErrInvalid,
// tenant.ErrNotFound if they were not linked, or a database error.
func (p *Policies) UnlinkCredential(ctx context.Context, tenantSlug, username, app string) error {
	return p.unlink(ctx, tenantSlug, CredentialSubject(username), AppSubject(app))
}

// AssignRole gives subject (a credential, app or role) the rules of role,
// a "role:<name>" subject. Assigning again does nothing. Errors:
// tenant.ErrInvalid, or a database error.
func (p *Policies) AssignRole(ctx context.Context, tenantSlug, subject, role string) error {
	if !strings.HasPrefix(role, RolePrefix) {
		return fmt.Errorf("%w: %q is not a role:<name> subject", tenant.ErrInvalid, role)
	}
	return p.link(ctx, tenantSlug, subject, role)
}

// UnassignRole undoes AssignRole. Errors: tenant.ErrInvalid,
// tenant.ErrNotFound if the subject did not have the role, or a database
// error.
func (p *Policies) UnassignRole(ctx context.Context, tenantSlug, subject, role string) error {
	if !strings.HasPrefix(role, RolePrefix) {
		return fmt.Errorf("%w: %q is not a role:<name> subject", tenant.ErrInvalid, role)
	}
	return p.unlink(ctx, tenantSlug, subject, role)
}

// link adds the grouping line (member, group, tenant).
func (p *Policies) link(ctx context.Context, tenantSlug, member, group string) error {
	if err := validSlugSubject(tenantSlug, member); err != nil {
		return err
	}
	if err := ValidateSubject(group); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.e.AddGroupingPolicyCtx(ctx, member, group, tenantSlug); err != nil {
		return fmt.Errorf("auth: link %s to %s: %w", member, group, err)
	}
	p.log.Debug("linked", "tenant", tenantSlug, "member", member, "group", group)
	return nil
}

// unlink removes the grouping line (member, group, tenant).
func (p *Policies) unlink(ctx context.Context, tenantSlug, member, group string) error {
	if err := validSlugSubject(tenantSlug, member); err != nil {
		return err
	}
	if err := ValidateSubject(group); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ok, err := p.e.RemoveGroupingPolicyCtx(ctx, member, group, tenantSlug)
	if err != nil {
		return fmt.Errorf("auth: unlink %s from %s: %w", member, group, err)
	}
	if !ok {
		return fmt.Errorf("auth: link %s to %s: %w", member, group, tenant.ErrNotFound)
	}
	p.log.Debug("unlinked", "tenant", tenantSlug, "member", member, "group", group)
	return nil
}

// ---------------------------------------------------------------------------
// Deletion
// ---------------------------------------------------------------------------

// DeleteSubject removes a subject's rules and every link from or to it
// (delete a credential, app or role). Deleting a subject that has none
// does nothing. Errors: tenant.ErrInvalid, or a database error; a failure
// part-way leaves the rest for a retry.
func (p *Policies) DeleteSubject(ctx context.Context, tenantSlug, subject string) error {
	if err := validSlugSubject(tenantSlug, subject); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	steps := []func() (bool, error){
		func() (bool, error) { return p.e.RemoveFilteredPolicyCtx(ctx, 0, subject, tenantSlug) },
		func() (bool, error) { return p.e.RemoveFilteredGroupingPolicyCtx(ctx, 0, subject, "", tenantSlug) },
		func() (bool, error) { return p.e.RemoveFilteredGroupingPolicyCtx(ctx, 1, subject, tenantSlug) },
	}
	for _, step := range steps {
		if _, err := step(); err != nil {
			return fmt.Errorf("auth: delete %s: %w", subject, err)
		}
	}
	p.log.Debug("subject deleted", "tenant", tenantSlug, "subject", subject)
	return nil
}

// DeleteTenant removes every rule and link of the tenant. Errors:
// tenant.ErrInvalid, or a database error (retry: it is idempotent).
func (p *Policies) DeleteTenant(ctx context.Context, tenantSlug string) error {
	if !tenant.ValidSlug(tenantSlug) {
		return fmt.Errorf("%w: tenant slug %q", tenant.ErrInvalid, tenantSlug)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.e.RemoveFilteredPolicyCtx(ctx, 1, tenantSlug); err != nil {
		return fmt.Errorf("auth: delete rules of tenant %s: %w", tenantSlug, err)
	}
	if _, err := p.e.RemoveFilteredGroupingPolicyCtx(ctx, 2, tenantSlug); err != nil {
		return fmt.Errorf("auth: delete links of tenant %s: %w", tenantSlug, err)
	}
	p.log.Info("tenant policies deleted", "tenant", tenantSlug)
	return nil
}

// ---------------------------------------------------------------------------
// Enforcement
// ---------------------------------------------------------------------------

// Enforce asks the Casbin enforcer whether subject may perform act
// (Publish or Subscribe, not both) on obj in the tenant: obj is a topic
// name for Publish, a plain topic filter for Subscribe. It follows links
// and roles and gives the same answer as CanPublish / CanSubscribe of
// Compile(RulesFor(…), "", username) for a "cred:<username>" subject: no
// client ID is known here, so rules using "%c" are resolved as for an
// unusable value (an allow grants nothing, a deny fails closed), and "%u"
// is the username of a credential subject (unusable for other subjects).
// An invalid obj is denied. It does no I/O; it is meant for the control
// plane (HTTP publishing, tests), not for the message path.
//
// Errors: tenant.ErrInvalid for a bad slug, subject or act.
func (p *Policies) Enforce(tenantSlug, subject, obj string, act Action) (bool, error) {
	if err := validSlugSubject(tenantSlug, subject); err != nil {
		return false, err
	}
	switch act {
	case Publish:
		if topic.ValidateTopic([]byte(obj)) != nil {
			return false, nil
		}
	case Subscribe:
		if topic.ValidateFilter(obj) != nil {
			return false, nil
		}
	default:
		return false, fmt.Errorf("%w: enforce action %v", tenant.ErrInvalid, act)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	ok, err := p.e.Enforce(subject, tenantSlug, obj, act.String())
	if err != nil {
		return false, fmt.Errorf("auth: enforce: %w", err)
	}
	return ok, nil
}

// mqttMatch is the Casbin matcher function
// mqttMatch(r.sub, r.act, r.obj, p.obj, p.eft): whether the policy's
// filter applies to the requested topic (publish: topic.Match) or filter
// (subscribe: an allow must contain it, topic.Subset; a deny applies if it
// overlaps it, Overlap), after resolving placeholders as described at
// Enforce.
func mqttMatch(args ...any) (any, error) {
	if len(args) != 5 {
		return false, fmt.Errorf("mqttMatch: %d arguments, want 5", len(args))
	}
	var s [5]string
	for i, a := range args {
		v, ok := a.(string)
		if !ok {
			return false, fmt.Errorf("mqttMatch: argument %d is %T, want string", i, a)
		}
		s[i] = v
	}
	sub, act, obj, filter, eft := s[0], s[1], s[2], s[3], s[4]
	effect, err := ParseEffect(eft)
	if err != nil {
		return false, nil // neither allow nor deny: no effect
	}
	username, _ := strings.CutPrefix(sub, CredentialPrefix)
	if !strings.HasPrefix(sub, CredentialPrefix) {
		username = ""
	}
	f, ok, fallback := resolve(Rule{Effect: effect, Action: PubSub, Filter: filter}, "", username)
	if !ok {
		if effect == Allow {
			return false, nil
		}
		if fallback == "" {
			return true, nil // a deny that fails closed: every topic
		}
		f = fallback
	}
	switch act {
	case "publish":
		return topic.Match(f, []byte(obj)), nil
	case "subscribe":
		if effect == Allow {
			return topic.Subset(obj, f), nil
		}
		return topic.Overlap(obj, f), nil
	}
	return false, nil
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

// policyLine is r as a Casbin policy line (sub, dom, obj, act, eft).
func policyLine(tenantSlug, subject string, r Rule) []string {
	return []string{subject, tenantSlug, r.Filter, r.Action.String(), r.Effect.String()}
}

// parseLine turns a Casbin policy line back into a Rule. A line this
// version cannot read (edited by hand, or by a newer version) is logged
// and skipped: Casbin gives it no effect either.
func (p *Policies) parseLine(l []string) (Rule, bool) {
	if len(l) == 5 {
		a, aerr := ParseAction(l[3])
		e, eerr := ParseEffect(l[4])
		if aerr == nil && eerr == nil {
			return Rule{Effect: e, Action: a, Filter: l[2]}, true
		}
	}
	p.log.Warn("ignoring unreadable policy line", "line", l)
	return Rule{}, false
}

// validSlugSubject validates a tenant slug and a subject.
func validSlugSubject(tenantSlug, subject string) error {
	if !tenant.ValidSlug(tenantSlug) {
		return fmt.Errorf("%w: tenant slug %q", tenant.ErrInvalid, tenantSlug)
	}
	return ValidateSubject(subject)
}
