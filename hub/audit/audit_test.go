package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/eco-project/eco/hub/audit"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseKubeRequest(t *testing.T) {
	tests := []struct {
		method, path, query string
		upgrade             bool
		want                audit.KubeRequest
	}{
		{"GET", "/api/v1/namespaces/default/pods", "", false,
			audit.KubeRequest{Verb: "list", APIVersion: "v1", Resource: "pods", Namespace: "default"}},
		{"GET", "/api/v1/namespaces/default/pods/web-1", "", false,
			audit.KubeRequest{Verb: "get", APIVersion: "v1", Resource: "pods", Namespace: "default", Name: "web-1"}},
		{"GET", "/api/v1/namespaces/default/pods/web-1/log", "follow=true", false,
			audit.KubeRequest{Verb: "get", APIVersion: "v1", Resource: "pods", Subresource: "log", Namespace: "default", Name: "web-1"}},
		{"GET", "/api/v1/pods", "watch=true", false,
			audit.KubeRequest{Verb: "watch", APIVersion: "v1", Resource: "pods"}},
		{"POST", "/apis/apps/v1/namespaces/prod/deployments", "", false,
			audit.KubeRequest{Verb: "create", APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Namespace: "prod"}},
		{"PATCH", "/apis/apps/v1/namespaces/prod/deployments/web/scale", "", false,
			audit.KubeRequest{Verb: "patch", APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Subresource: "scale", Namespace: "prod", Name: "web"}},
		{"DELETE", "/api/v1/namespaces/prod/configmaps", "", false,
			audit.KubeRequest{Verb: "deletecollection", APIVersion: "v1", Resource: "configmaps", Namespace: "prod"}},
		{"DELETE", "/api/v1/namespaces/prod", "", false,
			audit.KubeRequest{Verb: "delete", APIVersion: "v1", Resource: "namespaces", Namespace: "prod", Name: "prod"}},
		{"PUT", "/api/v1/namespaces/prod/finalize", "", false,
			audit.KubeRequest{Verb: "update", APIVersion: "v1", Resource: "namespaces", Subresource: "finalize", Namespace: "prod", Name: "prod"}},
		{"PUT", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", "", false,
			audit.KubeRequest{Verb: "update", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1", Resource: "clusterroles", Name: "view"}},
		{"POST", "/api/v1/namespaces/default/pods/web-1/exec", "command=sh", true,
			audit.KubeRequest{Verb: "connect", APIVersion: "v1", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "web-1"}},
		{"POST", "/api/v1/namespaces/default/pods/web-1/portforward", "", false,
			audit.KubeRequest{Verb: "connect", APIVersion: "v1", Resource: "pods", Subresource: "portforward", Namespace: "default", Name: "web-1"}},
		{"GET", "/version", "", false, audit.KubeRequest{Verb: "get"}},
		{"POST", "/apis", "", false, audit.KubeRequest{Verb: "post"}},
		{"GET", "/apis/apps/v1", "", false, audit.KubeRequest{Verb: "list", APIGroup: "apps", APIVersion: "v1"}},
		{"GET", "//api//v1/", "", false, audit.KubeRequest{Verb: "list", APIVersion: "v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			got := audit.ParseKubeRequest(tt.method, tt.path, q, tt.upgrade)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMutates(t *testing.T) {
	for verb, want := range map[string]bool{"get": false, "list": false, "watch": false, "head": false,
		"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true, "connect": true, "post": true} {
		if got := (audit.KubeRequest{Verb: verb}).Mutates(); got != want {
			t.Errorf("%s: Mutates() = %v, want %v", verb, got, want)
		}
	}
}

func openStore(t *testing.T) store.Store {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "eco.db"), store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// TestRecorderWritesStoreAndJSONLines: every recorded event reaches the
// real store and the JSON-lines writer by Close, in order.
func TestRecorderWritesStoreAndJSONLines(t *testing.T) {
	s := openStore(t)
	var lines syncBuffer
	reg := prometheus.NewRegistry()
	r, err := audit.New(audit.Config{Store: s, JSONLines: &lines, BatchSize: 7, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		r.Record(store.AuditEvent{User: "alice", Source: "proxy", Verb: "create", ClusterID: "c-1", Name: fmt.Sprint(i), Code: 201})
	}
	r.Close()
	r.Record(store.AuditEvent{User: "late", Source: "api", Verb: "x"}) // after Close: dropped, counted

	got, err := s.ListAudit(t.Context(), store.AuditQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("store has %d events, want %d", len(got), n)
	}
	for i, e := range got {
		if want := fmt.Sprint(n - 1 - i); e.Name != want || e.At.IsZero() {
			t.Fatalf("event %d: name %q at %v, want name %q and a time", i, e.Name, e.At, want)
		}
	}
	sc := bufio.NewScanner(&lines.b)
	i := 0
	for sc.Scan() {
		var e audit.EventJSON
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e.Name != fmt.Sprint(i) || e.User != "alice" || e.Verb != "create" || e.Code != 201 {
			t.Fatalf("line %d: %+v", i, e)
		}
		i++
	}
	if i != n {
		t.Fatalf("%d JSON lines, want %d", i, n)
	}
	if got := counter(t, reg, "eco_audit_dropped_total"); got != 1 {
		t.Errorf("dropped = %v, want 1 (the event after Close)", got)
	}
}

// blockingStore holds every write until released.
type blockingStore struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blockingStore) AppendAudit(ctx context.Context, events []store.AuditEvent) error {
	<-b.release
	b.mu.Lock()
	b.n += len(events)
	b.mu.Unlock()
	return nil
}

// TestRecorderNeverBlocksTheCaller: a stuck store fills the bounded queue;
// further events are dropped and counted, and Record returns at once.
func TestRecorderNeverBlocksTheCaller(t *testing.T) {
	b := &blockingStore{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	r, err := audit.New(audit.Config{Store: b, QueueSize: 10, BatchSize: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		r.Record(store.AuditEvent{Source: "proxy", Verb: "create"})
	}
	dropped := counter(t, reg, "eco_audit_dropped_total")
	// The writer holds one event, the queue ten: at least 89 dropped.
	if dropped < 89 || dropped > 90 {
		t.Errorf("dropped = %v, want 89 or 90", dropped)
	}
	close(b.release)
	r.Close()
	if b.n+int(dropped) != 100 {
		t.Errorf("written %d + dropped %v != 100", b.n, dropped)
	}
}

// counter reads a registered counter's value.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
