package hub

import (
	"net/http/httptest"
	"testing"
)

// TestStreams: which proxied requests count as streams, and so hold the
// small copy buffer for their whole life, and which end and get the big
// one.
func TestStreams(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		upgrade        bool
		want           bool
	}{
		{"GET", "/api/v1/namespaces/a/pods?watch=true&resourceVersion=1", false, true},
		{"GET", "/api/v1/pods?watch=1", false, true},
		{"GET", "/api/v1/namespaces/a/pods/p/log?follow=true&container=c", false, true},
		{"POST", "/api/v1/namespaces/a/pods/p/exec?command=sh&stdin=true", true, true},
		{"GET", "/api/v1/namespaces/a/pods/p/portforward", true, true},
		{"GET", "/api/v1/namespaces/a/pods/p/log?follow=false", false, false},
		{"GET", "/api/v1/configmaps?limit=500", false, false},
		{"GET", "/api/v1/namespaces/a/pods/p", false, false},
		{"GET", "/api/v1/pods?watch=false", false, false},
		{"POST", "/api/v1/namespaces/a/configmaps?follow=true", false, false},
		{"DELETE", "/api/v1/namespaces/a/pods/p", false, false},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.upgrade {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
		}
		if got := streams(r, kubeVerb(r)); got != tc.want {
			t.Errorf("%s %s (upgrade %v): streams = %v, want %v", tc.method, tc.target, tc.upgrade, got, tc.want)
		}
	}
}
