package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

func auditEvent(user, cluster, verb string) store.AuditEvent {
	return store.AuditEvent{User: user, TokenID: "t-" + user, Source: "proxy", Verb: verb, ClusterID: cluster,
		Resource: "deployments", APIGroup: "apps", Namespace: "default", Name: "web", Code: 201,
		Path: "/apis/apps/v1/namespaces/default/deployments", RequestID: "r-1", ClientRequestID: "c-1", RemoteAddr: "127.0.0.1:1"}
}

// testAuditAppendAndList: events come back newest first, with the fields
// they were written with, filtered by cluster and user, paged by Seq.
func testAuditAppendAndList(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	var all []store.AuditEvent
	for i := range 6 {
		ev := auditEvent([]string{"alice", "bob"}[i%2], []string{"c-a", "c-b", "c-a"}[i%3], "create")
		ev.Name = fmt.Sprintf("obj-%d", i)
		if i == 5 {
			ev.At = e.clock.Now().Add(-time.Hour) // a caller-given time is kept
		}
		e.clock.Advance(time.Second)
		batch := []store.AuditEvent{ev}
		if err := e.s.AppendAudit(e.ctx, batch); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		if batch[0].Seq == 0 {
			t.Fatalf("AppendAudit did not assign a Seq")
		}
		all = append(all, batch[0])
	}
	if err := e.s.AppendAudit(e.ctx, nil); err != nil {
		t.Fatalf("AppendAudit(nil) = %v, want nil", err)
	}

	got, err := e.s.ListAudit(e.ctx, store.AuditQuery{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	wantEqual(t, "number of events", len(got), 6)
	for i, ev := range got {
		want := all[len(all)-1-i]
		wantEqual(t, "event", ev, want)
	}
	wantEqual(t, "caller-given time", got[0].At, store.Timestamp(e.clock.Now().Add(-time.Second-time.Hour)))

	byCluster, err := e.s.ListAudit(e.ctx, store.AuditQuery{ClusterID: "c-b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range byCluster {
		if ev.ClusterID != "c-b" {
			t.Errorf("ClusterID filter returned %+v", ev)
		}
	}
	wantEqual(t, "c-b count", len(byCluster), 2)

	byUser, err := e.s.ListAudit(e.ctx, store.AuditQuery{User: "alice", ClusterID: "c-a"})
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "alice on c-a", len(byUser), 2) // events 0 and 4

	page1, err := e.s.ListAudit(e.ctx, store.AuditQuery{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	page2, err := e.s.ListAudit(e.ctx, store.AuditQuery{Limit: 4, Before: page1[len(page1)-1].Seq})
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "page sizes", []int{len(page1), len(page2)}, []int{4, 2})
	wantEqual(t, "second page starts after the first", page2[0].Seq < page1[3].Seq, true)
}

// testAuditValidation: a bad query or event is ErrInvalid and writes
// nothing; over-long fields are clamped, not refused.
func testAuditValidation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	for _, q := range []store.AuditQuery{{Limit: -1}, {Limit: store.MaxPageSize + 1}, {Before: -1}} {
		_, err := e.s.ListAudit(e.ctx, q)
		wantErr(t, fmt.Sprintf("ListAudit(%+v)", q), err, store.ErrInvalid)
	}
	good := auditEvent("alice", "c-a", "create")
	noVerb := good
	noVerb.Verb = ""
	err := e.s.AppendAudit(e.ctx, []store.AuditEvent{good, noVerb})
	wantErr(t, "AppendAudit without verb", err, store.ErrInvalid)
	got, err := e.s.ListAudit(e.ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "events after a refused batch", len(got), 0)

	long := good
	long.Path = "/" + strings.Repeat("p", 5000)
	long.Name = strings.Repeat("n", 5000)
	if err := e.s.AppendAudit(e.ctx, []store.AuditEvent{long}); err != nil {
		t.Fatalf("AppendAudit with long fields: %v", err)
	}
	got, err = e.s.ListAudit(e.ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Path) != 1024 || len(got[0].Name) != 256 {
		t.Fatalf("long fields: got %d events, path %d bytes, name %d bytes; want 1, 1024, 256", len(got), len(got[0].Path), len(got[0].Name))
	}
}

// testAuditRetention: the store keeps the newest AuditLimit events.
func testAuditRetention(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{AuditLimit: 5})
	for i := range 4 {
		batch := make([]store.AuditEvent, 3)
		for j := range batch {
			batch[j] = auditEvent("alice", "c-a", "patch")
			batch[j].Name = fmt.Sprintf("obj-%d", i*3+j)
		}
		if err := e.s.AppendAudit(e.ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.s.ListAudit(e.ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, ev := range got {
		kept = append(kept, ev.Name)
	}
	wantEqual(t, "kept events", kept, []string{"obj-11", "obj-10", "obj-9", "obj-8", "obj-7"})
}
