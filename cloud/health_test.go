package cloud

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/eco-project/eco/store"
)

func TestHealthStringAndParse(t *testing.T) {
	tests := []struct {
		h     Health
		text  string
		class string
	}{
		{Health{State: Healthy}, "Healthy", "ok"},
		{Health{State: Provisioning, Reason: "CREATING"}, "Provisioning: CREATING", "progress"},
		{Health{State: Updating, Reason: "RECONCILING; upgrading master"}, "Updating: RECONCILING; upgrading master", "progress"},
		{Health{State: Degraded, Reason: "node group ng DEGRADED: a: b"}, "Degraded: node group ng DEGRADED: a: b", "bad"},
		{Health{State: Stopped, Reason: "power state Stopped"}, "Stopped: power state Stopped", "neutral"},
		{Health{State: Deleting, Reason: "DELETING"}, "Deleting: DELETING", "progress"},
		{Health{State: Failed, Reason: "FAILED"}, "Failed: FAILED", "bad"},
		{Health{State: NotFound, Reason: "no longer in region x"}, "NotFound: no longer in region x", "bad"},
		{Health{State: Unknown, Reason: ReasonCredentialsRejected}, "Unknown: credentials rejected", "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			if got := tt.h.String(); got != tt.text {
				t.Errorf("String = %q, want %q", got, tt.text)
			}
			if got := ParseHealth(tt.text); got != tt.h {
				t.Errorf("ParseHealth(%q) = %+v, want %+v", tt.text, got, tt.h)
			}
			if got := tt.h.State.Class(); got != tt.class {
				t.Errorf("Class = %q, want %q", got, tt.class)
			}
		})
	}
	if got := ParseHealth("ACTIVE"); got != (Health{State: Unknown, Reason: "ACTIVE"}) {
		t.Errorf("a health string of another form: %+v", got)
	}
}

func TestDNSLabel(t *testing.T) {
	for in, want := range map[string]string{
		"prod":                  "prod",
		"Prod_EU.1":             "prod-eu-1",
		"--x--":                 "x",
		"":                      "cluster",
		"___":                   "cluster",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
		"prod-us-east-1":        "prod-us-east-1",
	} {
		got := DNSLabel(in)
		if got != want {
			t.Errorf("DNSLabel(%q) = %q, want %q", in, got, want)
		}
		if err := store.ValidateClusterName(got); err != nil {
			t.Errorf("DNSLabel(%q) = %q is not a cluster name: %v", in, got, err)
		}
	}
}

func TestClean(t *testing.T) {
	long := "Degraded: " + strings.Repeat("é", 300)
	for _, in := range []string{"Healthy", "Degraded: line1\nline2\x1b[31m", "Unknown: \xff\xfe", long} {
		got := clean(in)
		if err := store.ValidateCloudHealth(got); err != nil {
			t.Errorf("clean(%q) = %q: %v", in, got, err)
		}
		if !utf8.ValidString(got) {
			t.Errorf("clean(%q) is not UTF-8", in)
		}
	}
	if clean("Healthy") != "Healthy" {
		t.Errorf("clean changes a clean string")
	}
}
