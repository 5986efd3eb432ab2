package e2e

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// TestSecurityRotation holds the credential rotation rows of the security
// suite: each names an attack with an agent credential (rotated, of
// another cluster, made up) against a real hub while cluster A's real
// agent is connected, and the refusal it must get. A's credential is
// rotated (its agent takes the new one over the tunnel), and so is the
// credential of cluster B, whose agent is offline.
func TestSecurityRotation(t *testing.T) {
	w := newWorldWith(t, func(c *localeco.HubConfig) { c.CredentialGrace = rotationGrace })
	ctx := t.Context()
	b, err := w.hub.Import(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	ownToken := requestToken(t, cluster, install.DefaultNamespace, install.AgentName, w.setup.Config.HubURL)

	// The agent may rewrite its own install Secret, and no other: the
	// cluster's RBAC answers, as real kubectl asks it.
	sa := "system:serviceaccount:" + install.DefaultNamespace + ":" + install.AgentName
	for _, tt := range []struct {
		attack  string
		args    []string
		refusal string // what kubectl auth can-i answers
	}{
		{"the agent's ServiceAccount reads another Secret of its namespace", []string{"get", "secrets/other", "-n", install.DefaultNamespace}, "no"},
		{"the agent's ServiceAccount lists the Secrets of its namespace", []string{"list", "secrets", "-n", install.DefaultNamespace}, "no"},
		{"the agent's ServiceAccount patches a Secret named eco-agent in another namespace", []string{"patch", "secrets/" + install.AgentName, "-n", "default"}, "no"},
		{"the agent's ServiceAccount deletes its own Secret", []string{"delete", "secrets/" + install.AgentName, "-n", install.DefaultNamespace}, "no"},
		{"(allowed) the agent's ServiceAccount patches its own Secret", []string{"patch", "secrets/" + install.AgentName, "-n", install.DefaultNamespace}, "yes"},
	} {
		out, _ := cluster.Kubectl(ctx, append([]string{"auth", "can-i", "--as=" + sa}, tt.args...)...).CombinedOutput()
		if got := strings.TrimSpace(string(out)); got != tt.refusal {
			t.Errorf("%s: kubectl auth can-i says %q, want %q", tt.attack, got, tt.refusal)
		}
	}
	a0, b0 := w.credentialOf(t, w.id), w.credentialOf(t, b.ID)
	ra, rb := w.rotate(t, w.id), w.rotate(t, b.ID)
	if ra.Delivery != hub.DeliverySent || rb.Delivery != hub.DeliveryNotConnected {
		t.Fatalf("rotations delivered %q and %q, want sent and not-connected", ra.Delivery, rb.Delivery)
	}
	waitUntil(t, "A's rotation to complete", func() bool { return !w.clusterJSON(t, w.id).Credential.RotationPending })
	a1, b1 := w.credentialOf(t, w.id), w.credentialOf(t, b.ID)
	secrets := []string{a0, a1, b0, b1}
	swap := byte('A')
	if a1[10] == 'A' {
		swap = 'B'
	}
	flipped := a1[:10] + string(swap) + a1[11:]

	const (
		notProven   = "agent identity not proven" // the credential passed; the identity proof did not
		rotated     = "agent credential rotated: re-apply the install YAML"
		notTheirs   = "does not belong to cluster"
		unknownCred = "agent credential unknown or revoked"
	)
	type row struct {
		attack   string
		cluster  string // the cluster claimed
		cred     string
		identity string // the identity token presented
		code     int
		refusal  string
	}
	// Within the grace period of both rotations.
	within := []row{
		{"A's rotated credential replayed within the grace period from a plain program (accepted as a credential, still no identity)", w.id, a0, "", 403, notProven},
		{"B's credential presented as cluster A", w.id, b1, "", 403, notTheirs},
		{"B's rotated credential presented as cluster A, within B's grace period", w.id, b0, ownToken, 403, notTheirs},
		{"A's current credential presented as cluster B", b.ID, a1, ownToken, 403, notTheirs},
		{"a made-up credential in eco's format for cluster A", w.id, "ecoa_" + strings.Repeat("A", 43), "", 401, unknownCred},
		{"A's current credential with one character changed", w.id, flipped, ownToken, 401, unknownCred},
	}
	// After both grace periods have ended.
	after := []row{
		{"A's rotated credential after the grace period, with A's own real identity token", w.id, a0, ownToken, 403, rotated},
		{"A's rotated credential after the grace period, from a plain program", w.id, a0, "", 403, rotated},
		{"A's rotated credential after the grace period, claiming cluster B", b.ID, a0, "", 403, notTheirs},
		{"B's rotated credential after the grace period (B's agent was offline during the rotation)", b.ID, b0, "", 403, rotated},
	}
	run := func(rows []row) {
		for _, tt := range rows {
			t.Run(tt.attack, func(t *testing.T) {
				err := w.dialWith(t, tt.cluster, tt.cred, tt.identity)
				var rej *tunnel.RejectError
				if !errors.As(err, &rej) || rej.StatusCode != tt.code || !strings.Contains(rej.Reason, tt.refusal) {
					t.Fatalf("Dial: %v, want %d %q", err, tt.code, tt.refusal)
				}
				for _, s := range secrets {
					if strings.Contains(rej.Reason, s) {
						t.Fatal("the refusal shows a credential")
					}
				}
				// A's live session keeps serving real kubectl.
				if out := mustKubectl(t, w.kc, "get", "namespace", "kube-system", "-o", "name"); strings.TrimSpace(out) != "namespace/kube-system" {
					t.Fatalf("kubectl through the hub after the attack: %q", out)
				}
			})
		}
	}
	run(within)
	if time.Now().After(ra.PreviousValidUntil) {
		t.Fatal("the grace period ended before the rows within it ran: raise rotationGrace")
	}
	time.Sleep(time.Until(rb.PreviousValidUntil) + time.Second)
	run(after)

	// A second rotation of A drops generation 0 altogether.
	if r := w.rotate(t, w.id); r.Generation != 2 || r.Delivery != hub.DeliverySent {
		t.Fatalf("second rotation: %+v", r)
	}
	run([]row{
		{"A's credential two generations back", w.id, a0, ownToken, 401, unknownCred},
	})
	waitUntil(t, "A's second rotation to complete", func() bool { return !w.clusterJSON(t, w.id).Credential.RotationPending })
	if st, _ := w.hub.Status(ctx, w.id); st.State != string(store.StateConnected) {
		t.Fatalf("A is %s (%s) after the attacks", st.State, st.Reason)
	}
	if got := secretToken(t); got != w.credentialOf(t, w.id) {
		t.Fatal("A's Secret does not hold the credential of generation 2")
	}
	// B's admins see why its agent is refused; nobody sees a credential.
	// (The refusal's status goes through B's status queue, apart from the
	// refusal itself: awaited.)
	var st hub.StatusJSON
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if st, err = w.hub.Status(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if st.State == string(store.StateFailing) && strings.Contains(st.Reason, "credential rotated") && strings.Contains(st.Reason, "re-apply the install YAML") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's status = %s %q, want Failing saying to re-apply the install YAML", st.State, st.Reason)
		}
	}
	var hist []byte
	if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+b.ID+"/history", "", nil, &hist); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(hist)+st.Reason, s) {
			t.Fatal("B's status or history shows a credential")
		}
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", w.hub.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+w.hub.AdminToken)
	resp, err := w.hub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`eco_hub_previous_credential_connects_total{result="accepted"} 1`,
		`eco_hub_previous_credential_connects_total{result="refused"} 3`,
		`eco_hub_credential_rotations_total{delivery="sent"} 2`,
		`eco_hub_credential_acks_total{result="ok"} 2`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
