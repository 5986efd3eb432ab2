package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

func testCloudAccounts(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	if as, err := e.s.ListCloudAccounts(e.ctx); err != nil || len(as) != 0 {
		t.Fatalf("ListCloudAccounts on an empty store = %v, %v", as, err)
	}
	mk := func(na store.NewCloudAccount) store.CloudAccount {
		t.Helper()
		e.clock.Advance(time.Second)
		a, err := e.s.CreateCloudAccount(e.ctx, na)
		if err != nil {
			t.Fatalf("CreateCloudAccount(%q): %v", na.Name, err)
		}
		if !store.ValidID(store.CloudAccountIDPrefix, a.ID) {
			t.Errorf("account ID %q is not a- and 10 base32 characters", a.ID)
		}
		want := store.CloudAccount{ID: a.ID, Name: na.Name, Provider: na.Provider, Scopes: na.Scopes, Sealed: na.Sealed, CreatedAt: e.clock.Stored()}
		wantEqual(t, "CreateCloudAccount", a, want)
		got, err := e.s.GetCloudAccount(e.ctx, a.ID)
		if err != nil {
			t.Fatalf("GetCloudAccount: %v", err)
		}
		wantEqual(t, "GetCloudAccount", got, want)
		return a
	}
	aws := mk(store.NewCloudAccount{Name: "prod-aws", Provider: store.ProviderEKS, Scopes: []string{"eu-west-1", "us-east-1"}, Sealed: []byte("sealed-1")})
	gcp := mk(store.NewCloudAccount{Name: "gcp", Provider: store.ProviderGKE, Scopes: []string{"my-project"}, Sealed: []byte("sealed-2")})
	as, err := e.s.ListCloudAccounts(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "ListCloudAccounts", len(as), 2)
	wantEqual(t, "oldest first", as[0].ID+as[1].ID, aws.ID+gcp.ID)

	_, err = e.s.CreateCloudAccount(e.ctx, store.NewCloudAccount{Name: "prod-aws", Provider: store.ProviderAKS, Scopes: []string{"sub"}, Sealed: []byte("x")})
	wantErr(t, "a duplicate name", err, store.ErrConflict)
	for _, bad := range []store.NewCloudAccount{
		{Name: "Bad Name", Provider: store.ProviderEKS, Scopes: []string{"r"}, Sealed: []byte("x")},
		{Name: "generic", Provider: store.ProviderGeneric, Scopes: []string{"r"}, Sealed: []byte("x")},
		{Name: "noscope", Provider: store.ProviderEKS, Sealed: []byte("x")},
		{Name: "emptyscope", Provider: store.ProviderEKS, Scopes: []string{""}, Sealed: []byte("x")},
		{Name: "ctlscope", Provider: store.ProviderEKS, Scopes: []string{"eu\x1b"}, Sealed: []byte("x")},
		{Name: "nosealed", Provider: store.ProviderEKS, Scopes: []string{"r"}},
		{Name: "bigsealed", Provider: store.ProviderEKS, Scopes: []string{"r"}, Sealed: []byte(strings.Repeat("s", store.MaxSealedLen+1))},
	} {
		_, err := e.s.CreateCloudAccount(e.ctx, bad)
		wantErr(t, "CreateCloudAccount("+bad.Name+")", err, store.ErrInvalid)
	}

	if err := e.s.ResealCloudAccount(e.ctx, aws.ID, []byte("sealed-again")); err != nil {
		t.Fatalf("ResealCloudAccount: %v", err)
	}
	if got, _ := e.s.GetCloudAccount(e.ctx, aws.ID); string(got.Sealed) != "sealed-again" {
		t.Errorf("after ResealCloudAccount sealed = %q", got.Sealed)
	}
	wantErr(t, "Reseal of a missing account", e.s.ResealCloudAccount(e.ctx, "a-aaaaaaaaaa", []byte("x")), store.ErrNotFound)
	wantErr(t, "Reseal with nothing", e.s.ResealCloudAccount(e.ctx, aws.ID, nil), store.ErrInvalid)
	_, err = e.s.GetCloudAccount(e.ctx, "a-aaaaaaaaaa")
	wantErr(t, "GetCloudAccount of a missing account", err, store.ErrNotFound)

	// Links.
	c1, c2 := e.create("eks-one"), e.create("eks-two")
	l1 := store.CloudLink{ClusterID: c1.ID, AccountID: aws.ID, Scope: "eu-west-1", CloudRef: "arn:aws:eks:eu-west-1:1:cluster/one", Version: "1.31"}
	if err := e.s.LinkCloudCluster(e.ctx, l1); err != nil {
		t.Fatalf("LinkCloudCluster: %v", err)
	}
	dupRef := store.CloudLink{ClusterID: c2.ID, AccountID: aws.ID, Scope: "eu-west-1", CloudRef: l1.CloudRef}
	wantErr(t, "the same cloud ref twice", e.s.LinkCloudCluster(e.ctx, dupRef), store.ErrConflict)
	dupCluster := l1
	dupCluster.CloudRef = "arn:aws:eks:eu-west-1:1:cluster/other"
	wantErr(t, "a cluster linked twice", e.s.LinkCloudCluster(e.ctx, dupCluster), store.ErrConflict)
	wantErr(t, "a missing cluster", e.s.LinkCloudCluster(e.ctx, store.CloudLink{ClusterID: "c-aaaaaaaaaa", AccountID: aws.ID, Scope: "r", CloudRef: "x"}), store.ErrNotFound)
	wantErr(t, "a missing account", e.s.LinkCloudCluster(e.ctx, store.CloudLink{ClusterID: c2.ID, AccountID: "a-aaaaaaaaaa", Scope: "r", CloudRef: "x"}), store.ErrNotFound)
	wantErr(t, "an empty link", e.s.LinkCloudCluster(e.ctx, store.CloudLink{ClusterID: c2.ID}), store.ErrInvalid)
	l2 := store.CloudLink{ClusterID: c2.ID, AccountID: aws.ID, Scope: "us-east-1", CloudRef: "arn:aws:eks:us-east-1:1:cluster/one"}
	if err := e.s.LinkCloudCluster(e.ctx, l2); err != nil {
		t.Fatalf("LinkCloudCluster: %v", err)
	}
	ls, err := e.s.CloudLinks(e.ctx, aws.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "CloudLinks(aws)", ls, []store.CloudLink{l1, l2})
	if ls, _ := e.s.CloudLinks(e.ctx, gcp.ID); len(ls) != 0 {
		t.Errorf("CloudLinks(gcp) = %v", ls)
	}
	if ls, _ := e.s.CloudLinks(e.ctx, ""); len(ls) != 2 {
		t.Errorf("CloudLinks(all) = %v", ls)
	}
	got, err := e.s.CloudLinkByRef(e.ctx, l2.CloudRef)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "CloudLinkByRef", got, l2)
	_, err = e.s.CloudLinkByRef(e.ctx, "nope")
	wantErr(t, "CloudLinkByRef(nope)", err, store.ErrNotFound)

	wantErr(t, "deleting an account in use", e.s.DeleteCloudAccount(e.ctx, aws.ID), store.ErrConflict)
	for _, c := range []store.Cluster{c1, c2} {
		if err := e.s.DeleteCluster(e.ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if ls, _ := e.s.CloudLinks(e.ctx, ""); len(ls) != 0 {
		t.Errorf("links outlive their clusters: %v", ls)
	}
	if err := e.s.DeleteCloudAccount(e.ctx, aws.ID); err != nil {
		t.Fatalf("DeleteCloudAccount: %v", err)
	}
	wantErr(t, "deleting it again", e.s.DeleteCloudAccount(e.ctx, aws.ID), store.ErrNotFound)
}
