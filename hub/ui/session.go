package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// Cookie names.
const (
	sessionCookie = "eco_session"
	// loginCSRFCookie carries the CSRF token of the sign-in form, which
	// has no session yet (double-submit).
	loginCSRFCookie = "eco_login_csrf"
	csrfField       = "csrf"
	maxFormBytes    = 64 << 10
)

// session is one sign-in. The API token stays on the server: the browser
// holds only a random session ID, and every request authenticates the
// token again, so revoking it ends the session.
type session struct {
	token   string
	csrf    string
	expires time.Time
}

// sessions is the in-memory session table, keyed by the SHA-256 of the
// session ID.
type sessions struct {
	now func() time.Time
	ttl time.Duration

	mu sync.Mutex // guards m
	m  map[[32]byte]session
}

func newSessions(now func() time.Time, ttl time.Duration) *sessions {
	return &sessions{now: now, ttl: ttl, m: map[[32]byte]session{}}
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for token and returns its ID.
func (s *sessions) create(token string) (string, session) {
	id := randomString()
	sess := session{token: token, csrf: randomString(), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.m { // sweep; sign-ins are rare
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

func (s *sessions) get(id string) (session, bool) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[k]
	if ok && s.now().After(sess.expires) {
		delete(s.m, k)
		return session{}, false
	}
	return sess, ok
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// request is an authenticated page request.
type request struct {
	ident     hub.Identity
	csrf      string // empty for bearer-token requests
	sessionID string
}

func (rq *request) admin() bool { return rq.ident.Role == store.RoleAdmin }

// clusterAdmin reports whether rq may manage cluster id (rename and label
// it, see its install YAML and audit log, delete it): a hub admin, or a
// member granted admin on it. It is the API's rule for the same actions.
func (rq *request) clusterAdmin(id string) bool {
	return rq.ident.ClusterRole(id) == store.ClusterAdmin
}

// clusterAdmin lets next run only for a cluster admin of the cluster in
// the path (see request.clusterAdmin); a user who may not see the cluster
// is told it does not exist, as everywhere.
func (u *UI) clusterAdmin(next func(http.ResponseWriter, *http.Request, *request)) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		id := r.PathValue("id")
		switch role := rq.ident.ClusterRole(id); {
		case role == "":
			u.storeFail(w, r, rq, store.ErrNotFound)
		case role != store.ClusterAdmin:
			u.fail(w, r, rq, http.StatusForbidden, "Hub user "+rq.ident.Name+" has "+string(role)+" access to this cluster; this needs admin access to it.")
		default:
			next(w, r, rq)
		}
	}
}

// view starts a page's view for rq.
func (rq *request) view(title, section string) view {
	return view{Title: title, Section: section, User: rq.ident, Admin: rq.admin(), CSRF: rq.csrf}
}

// user authenticates a page request by session cookie or bearer token,
// checks the CSRF token of every POST made with a session, and requires
// minRole.
func (u *UI) user(minRole store.Role, next func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rq, err := u.authenticate(r)
		if err != nil {
			if !errors.Is(err, hub.ErrUnauthenticated) {
				u.logger.Error("authenticating", "err", err)
				u.fail(w, r, nil, http.StatusInternalServerError, "Authentication is unavailable; try again shortly.")
				return
			}
			if r.Method == http.MethodGet && r.Header.Get("Authorization") == "" {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="eco"`)
			u.fail(w, r, nil, http.StatusUnauthorized, "Sign in, or send a valid hub API token as Authorization: Bearer.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				u.fail(w, r, rq, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if rq.csrf != "" && !equal(r.PostForm.Get(csrfField), rq.csrf) {
				u.logger.Warn("POST without a valid CSRF token refused", "path", r.URL.Path, "user", rq.ident.Name)
				u.fail(w, r, rq, http.StatusForbidden, "This form was not sent from this page (its CSRF token is missing or wrong). Reload the page and try again.")
				return
			}
		}
		if minRole == store.RoleAdmin && !rq.admin() {
			u.fail(w, r, rq, http.StatusForbidden, "Hub user "+rq.ident.Name+" has the "+string(rq.ident.Role)+" role; this needs the admin role.")
			return
		}
		if minRole == store.RoleAdmin && rq.ident.Scope.Clusters != nil && r.PathValue("id") == "" {
			u.fail(w, r, rq, http.StatusForbidden, "This sign-in's token is scoped to some clusters; managing the hub needs a token without a cluster scope.")
			return
		}
		if rq.ident.Scope.ReadOnly && r.Method == http.MethodPost && r.URL.Path != "/ui/logout" {
			u.fail(w, r, rq, http.StatusForbidden, "This sign-in's token is read-only.")
			return
		}
		r = r.WithContext(hub.WithIdentity(r.Context(), rq.ident))
		next(w, r, rq)
	}
}

// authenticate resolves the request's bearer token, or else its session.
func (u *UI) authenticate(r *http.Request) (*request, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return nil, hub.ErrUnauthenticated
		}
		id, err := u.hub.AuthenticateToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			return nil, err
		}
		return &request{ident: id}, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, hub.ErrUnauthenticated
	}
	sess, ok := u.sessions.get(c.Value)
	if !ok {
		return nil, hub.ErrUnauthenticated
	}
	id, err := u.hub.AuthenticateToken(r.Context(), sess.token)
	if err != nil {
		if errors.Is(err, hub.ErrUnauthenticated) {
			u.sessions.delete(c.Value) // the token was revoked
		}
		return nil, err
	}
	return &request{ident: id, csrf: sess.csrf, sessionID: c.Value}, nil
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (u *UI) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: u.secure, SameSite: http.SameSiteLaxMode,
	}
}

type loginData struct {
	Next string
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	u.showLogin(w, r, http.StatusOK, "")
}

func (u *UI) showLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	csrf := randomString()
	http.SetCookie(w, u.cookie(loginCSRFCookie, csrf, 3600))
	u.render(w, r, code, "login", view{
		Title: "Sign in", CSRF: csrf, Error: msg,
		Data: loginData{Next: localPath(r.FormValue("next"))},
	})
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		u.showLogin(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || !equal(r.PostForm.Get(csrfField), c.Value) {
		u.showLogin(w, r, http.StatusForbidden, "The sign-in form expired or was not sent from this page. Try again.")
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	id, err := u.hub.AuthenticateToken(r.Context(), token)
	if err != nil {
		if errors.Is(err, hub.ErrUnauthenticated) {
			u.showLogin(w, r, http.StatusUnauthorized, "That token is not a valid hub API token.")
			return
		}
		u.logger.Error("signing in", "err", err)
		u.showLogin(w, r, http.StatusInternalServerError, "Signing in is unavailable; try again shortly.")
		return
	}
	sid, _ := u.sessions.create(token)
	http.SetCookie(w, u.cookie(sessionCookie, sid, int(u.cfg.SessionTTL/time.Second)))
	http.SetCookie(w, u.cookie(loginCSRFCookie, "", -1))
	u.logger.Info("signed in", "user", id.Name, "role", id.Role, "token", id.TokenID)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, rq *request) {
	if rq.sessionID != "" {
		u.sessions.delete(rq.sessionID)
	}
	http.SetCookie(w, u.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
