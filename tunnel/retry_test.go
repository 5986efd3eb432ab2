package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRetryRefused: a request whose tunnel stream the agent refused is sent
// again, with a growing wait, unless it has a body, the retries run out or
// the client gives up.
func TestRetryRefused(t *testing.T) {
	refused := fmt.Errorf("reading the response: %w", ErrRefused)
	for _, tc := range []struct {
		name      string
		body      bool
		refusals  int // before the agent accepts
		cancelled bool
		wantCalls int
		wantErr   error
		wantWaits []time.Duration
	}{
		{"accepted at once", false, 0, false, 1, nil, nil},
		{"refused twice", false, 2, false, 3, nil, ms(20, 40)},
		{"refused for good", false, 100, false, refusedRetries + 1, ErrRefused, ms(20, 40, 80, 160, 320, 640)},
		{"with a body", true, 1, false, 1, ErrRefused, nil},
		{"client gone", false, 1, true, 1, context.Canceled, ms(20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			next := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				calls++
				if calls <= tc.refusals {
					return nil, refused
				}
				return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
			})
			var waits []time.Duration
			rt := retryRefused{next: next, sleep: func(ctx context.Context, d time.Duration) error {
				waits = append(waits, d)
				if tc.cancelled {
					return context.Canceled
				}
				return nil
			}}
			var body io.Reader
			if tc.body {
				body = strings.NewReader(`{"kind":"ConfigMap"}`)
			}
			r := httptest.NewRequest("POST", "http://cluster/api/v1/namespaces/a/configmaps", body)
			if !tc.body {
				r.Method, r.Body = "GET", http.NoBody
			}
			resp, err := rt.RoundTrip(r)
			if resp != nil {
				resp.Body.Close()
			}
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("%d calls, err %v; want %d calls, err %v", calls, err, tc.wantCalls, tc.wantErr)
			}
			if !slices.Equal(waits, tc.wantWaits) {
				t.Fatalf("waited %v, want %v", waits, tc.wantWaits)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func ms(v ...int) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x) * time.Millisecond
	}
	return d
}
