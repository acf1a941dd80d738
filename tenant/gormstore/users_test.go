package gormstore

import (
	"context"
	"testing"
	"time"

	"github.com/relaymq/relay/tenant"
)

func mkUser(t *testing.T, s *Store, email, tenantID string, role tenant.Role) *tenant.User {
	t.Helper()
	u := &tenant.User{Email: email, PasswordHash: "$argon2id$test", TenantID: tenantID, Role: role}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return u
}

func TestUsers(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		acme := mkTenant(t, s, "acme")
		u := mkUser(t, s, "  Ann@Example.COM ", acme.ID, tenant.RoleOwner)
		if u.ID == "" || u.Email != "ann@example.com" || u.CreatedAt.IsZero() {
			t.Fatalf("created user %+v", u)
		}
		op := mkUser(t, s, "ops@relay.example", "", tenant.RoleOperator)

		for _, tc := range []struct {
			name string
			u    tenant.User
			want error
		}{
			{"same email, other case", tenant.User{Email: "ANN@example.com", PasswordHash: "h", TenantID: acme.ID, Role: tenant.RoleOwner}, tenant.ErrConflict},
			{"bad email", tenant.User{Email: "not an email", PasswordHash: "h", TenantID: acme.ID, Role: tenant.RoleOwner}, tenant.ErrInvalid},
			{"display name", tenant.User{Email: "Ann <b@example.com>", PasswordHash: "h", TenantID: acme.ID, Role: tenant.RoleOwner}, tenant.ErrInvalid},
			{"no hash", tenant.User{Email: "b@example.com", TenantID: acme.ID, Role: tenant.RoleOwner}, tenant.ErrInvalid},
			{"owner without tenant", tenant.User{Email: "b@example.com", PasswordHash: "h", Role: tenant.RoleOwner}, tenant.ErrInvalid},
			{"operator with tenant", tenant.User{Email: "b@example.com", PasswordHash: "h", TenantID: acme.ID, Role: tenant.RoleOperator}, tenant.ErrInvalid},
			{"bad role", tenant.User{Email: "b@example.com", PasswordHash: "h", TenantID: acme.ID, Role: "root"}, tenant.ErrInvalid},
			{"unknown tenant", tenant.User{Email: "b@example.com", PasswordHash: "h", TenantID: "nope", Role: tenant.RoleOwner}, tenant.ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u := tc.u
				wantErr(t, "CreateUser", s.CreateUser(ctx, &u), tc.want)
			})
		}

		got, err := s.UserByEmail(ctx, "ANN@EXAMPLE.com")
		if err != nil || got.ID != u.ID || got.TenantID != acme.ID || got.Role != tenant.RoleOwner || got.PasswordHash != "$argon2id$test" {
			t.Errorf("UserByEmail = %+v, %v", got, err)
		}
		if got, err := s.UserByID(ctx, op.ID); err != nil || got.TenantID != "" || got.Role != tenant.RoleOperator {
			t.Errorf("UserByID(operator) = %+v, %v", got, err)
		}
		_, err = s.UserByEmail(ctx, "nobody@example.com")
		wantErr(t, "UserByEmail(unknown)", err, tenant.ErrNotFound)
		_, err = s.UserByID(ctx, "nope")
		wantErr(t, "UserByID(unknown)", err, tenant.ErrNotFound)

		wantErr(t, "SetPasswordHash", s.SetPasswordHash(ctx, u.ID, "$argon2id$new"), nil)
		if got, _ := s.UserByID(ctx, u.ID); got == nil || got.PasswordHash != "$argon2id$new" {
			t.Errorf("after SetPasswordHash: %+v", got)
		}
		wantErr(t, "SetPasswordHash(unknown)", s.SetPasswordHash(ctx, "nope", "x"), tenant.ErrNotFound)
		wantErr(t, "SetPasswordHash(empty)", s.SetPasswordHash(ctx, u.ID, ""), tenant.ErrInvalid)
	})
}

func TestSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		acme := mkTenant(t, s, "acme")
		u := mkUser(t, s, "ann@example.com", acme.ID, tenant.RoleOwner)
		now := time.Now().UTC().Truncate(time.Microsecond)

		sess := &tenant.Session{ID: "s1", UserID: u.ID, CSRFToken: "csrf1", ExpiresAt: now.Add(7 * 24 * time.Hour)}
		wantErr(t, "CreateSession", s.CreateSession(ctx, sess), nil)
		if sess.CreatedAt.IsZero() || sess.LastSeen.IsZero() {
			t.Errorf("CreateSession left timestamps zero: %+v", sess)
		}
		wantErr(t, "CreateSession(same ID)", s.CreateSession(ctx, &tenant.Session{ID: "s1", UserID: u.ID, CSRFToken: "x", ExpiresAt: now}), tenant.ErrConflict)
		wantErr(t, "CreateSession(unknown user)", s.CreateSession(ctx, &tenant.Session{ID: "s2", UserID: "nope", CSRFToken: "x", ExpiresAt: now}), tenant.ErrNotFound)
		wantErr(t, "CreateSession(no token)", s.CreateSession(ctx, &tenant.Session{ID: "s2", UserID: u.ID, ExpiresAt: now}), tenant.ErrInvalid)

		gs, gu, err := s.SessionUser(ctx, "s1")
		if err != nil || gs.UserID != u.ID || gs.CSRFToken != "csrf1" || !gs.ExpiresAt.Equal(sess.ExpiresAt) ||
			gu.Email != "ann@example.com" || gu.TenantID != acme.ID || gu.Role != tenant.RoleOwner || !gu.CreatedAt.Equal(u.CreatedAt) {
			t.Fatalf("SessionUser = %+v, %+v, %v", gs, gu, err)
		}
		_, _, err = s.SessionUser(ctx, "nope")
		wantErr(t, "SessionUser(unknown)", err, tenant.ErrNotFound)

		later := now.Add(time.Hour)
		wantErr(t, "TouchSession", s.TouchSession(ctx, "s1", later), nil)
		if gs, _, _ := s.SessionUser(ctx, "s1"); gs == nil || !gs.LastSeen.Equal(later) {
			t.Errorf("LastSeen after touch: %+v, want %v", gs, later)
		}
		wantErr(t, "TouchSession(unknown)", s.TouchSession(ctx, "nope", later), tenant.ErrNotFound)

		// Expiry sweep: one past its absolute end, one idle, one live.
		for _, ss := range []tenant.Session{
			{ID: "old", UserID: u.ID, CSRFToken: "c", ExpiresAt: now.Add(-time.Minute), LastSeen: now},
			{ID: "idle", UserID: u.ID, CSRFToken: "c", ExpiresAt: now.Add(time.Hour), LastSeen: now.Add(-13 * time.Hour)},
		} {
			wantErr(t, "CreateSession("+ss.ID+")", s.CreateSession(ctx, &ss), nil)
		}
		n, err := s.DeleteExpiredSessions(ctx, now, now.Add(-12*time.Hour))
		if err != nil || n != 2 {
			t.Errorf("DeleteExpiredSessions = %d, %v; want 2", n, err)
		}
		if _, _, err := s.SessionUser(ctx, "s1"); err != nil {
			t.Errorf("live session swept: %v", err)
		}

		wantErr(t, "DeleteSession", s.DeleteSession(ctx, "s1"), nil)
		wantErr(t, "DeleteSession(again)", s.DeleteSession(ctx, "s1"), nil)
		_, _, err = s.SessionUser(ctx, "s1")
		wantErr(t, "SessionUser(deleted)", err, tenant.ErrNotFound)

		for _, id := range []string{"a", "b"} {
			wantErr(t, "CreateSession", s.CreateSession(ctx, &tenant.Session{ID: id, UserID: u.ID, CSRFToken: "c", ExpiresAt: now.Add(time.Hour)}), nil)
		}
		if n, err := s.DeleteUserSessions(ctx, u.ID); err != nil || n != 2 {
			t.Errorf("DeleteUserSessions = %d, %v; want 2", n, err)
		}
	})
}

func TestNormalizeEmail(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"ann@example.com", "ann@example.com", true},
		{" Ann@Example.Com\n", "ann@example.com", true},
		{"a.b+tag@sub.example.org", "a.b+tag@sub.example.org", true},
		{"", "", false},
		{"ann", "ann", false},
		{"ann@localhost", "ann@localhost", false},
		{"ann@example.", "ann@example.", false},
		{"Ann <ann@example.com>", "ann <ann@example.com>", false},
		{"a@b@example.com", "a@b@example.com", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := tenant.NormalizeEmail(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("NormalizeEmail(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
