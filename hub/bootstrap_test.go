package hub_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/eco-project/eco/hub"
)

// TestBootstrapWith: a hub that has tokens takes no bootstrap token, and
// a malformed one is refused.
func TestBootstrapWith(t *testing.T) {
	e := newEnv(t) // bootstraps an admin token
	good := "ecot_" + strings.Repeat("A", hub.MinBootstrapSecretLen)
	created, err := e.hub.BootstrapWith(t.Context(), good)
	if err != nil || created {
		t.Fatalf("BootstrapWith on a hub with tokens = %v, %v; want false, nil", created, err)
	}
	if code := e.do(http.MethodGet, "/api/v1/whoami", good, "", nil); code != http.StatusUnauthorized {
		t.Errorf("the refused bootstrap token authenticates: %d", code)
	}
	for _, bad := range []string{"", "ecot_", "ecot_" + strings.Repeat("A", hub.MinBootstrapSecretLen-1), "x" + good, good + "!", "ecot_" + strings.Repeat("A", 300)} {
		if _, err := e.hub.BootstrapWith(t.Context(), bad); !errors.Is(err, hub.ErrBadBootstrapSecret) {
			t.Errorf("BootstrapWith(%.20q…) = %v, want ErrBadBootstrapSecret", bad, err)
		}
	}
}
