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

// TestSanitizeRequestID: what of a client's X-Request-Id reaches the
// hub's logs.
func TestSanitizeRequestID(t *testing.T) {
	long := ""
	for range 100 {
		long += "ab"
	}
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"abc-123_x.y:z/w", "abc-123_x.y:z/w"},
		{"a b\tc", "a_b_c"},
		{"evil\r\nX-Injected: 1", "evil__X-Injected:_1"},
		{`{"level":"ERROR"}`, `__level_:_ERROR__`},
		{"ünï", "__n__"}, // bytes, not runes
		{long, long[:maxClientRequestID]},
	} {
		if got := sanitizeRequestID(tc.in); got != tc.want {
			t.Errorf("sanitizeRequestID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestKubeVerbIsBounded: invented methods are "other", never a label of
// their own.
func TestKubeVerbIsBounded(t *testing.T) {
	for method, want := range map[string]string{
		"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
		"HEAD": "head", "OPTIONS": "options", "PROPFIND": "other", "X1Y": "other", "get": "other",
	} {
		r := httptest.NewRequest("GET", "/api", nil)
		r.Method = method
		if got := kubeVerb(r); got != want {
			t.Errorf("kubeVerb(%s) = %q, want %q", method, got, want)
		}
	}
}
