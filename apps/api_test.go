package apps_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localeco"
)

// TestAPIRefusals: bad input gets a clear error and changes nothing;
// without a tunnel the API says eco is not connected; an unknown cluster
// or operation is not found; no token is 401.
func TestAPIRefusals(t *testing.T) {
	ctx := t.Context()
	var svc *apps.Service
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(t.TempDir(), "hub"), Logger: logger(t),
		Mount: func(h *hub.Hub) error {
			var err error
			if svc, err = apps.New(apps.Config{Hub: h, Logger: logger(t)}); err != nil {
				return err
			}
			svc.Mount(h)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	defer svc.Close()
	c, err := h.Import(ctx, "offline")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, hub: h, id: c.ID}
	chart := packageChart(t, "shop", nil)
	base := "/api/v1/clusters/" + c.ID + "/releases"
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		{"unknown field", "POST", base, map[string]any{"nope": 1}, 400, "unknown field"},
		{"no chart", "POST", base, map[string]any{"namespace": "a", "name": "b"}, 400, "chart"},
		{"broken archive", "POST", base, map[string]any{"namespace": "a", "name": "b", "chart": map[string]any{"archive": "aGVsbG8="}}, 400, "chart archive"},
		{"values not YAML", "POST", base, map[string]any{"namespace": "a", "name": "b", "chart": map[string]any{"archive": chart}, "values": "a: [b"}, 400, "values"},
		{"bad release name", "POST", base, map[string]any{"namespace": "a", "name": "Bad_Name", "chart": map[string]any{"archive": chart}}, 422, "release name"},
		{"schema-invalid values", "POST", base, map[string]any{"namespace": "a", "name": "b", "chart": map[string]any{"archive": chart}, "values": "service: {port: 70000}"}, 422, "port"},
		{"not connected", "POST", base, map[string]any{"namespace": "a", "name": "b", "chart": map[string]any{"archive": chart}}, 503, "not connected"},
		{"catalog chart without a catalog", "POST", base, map[string]any{"namespace": "a", "name": "b", "chart": map[string]any{"repo": "r", "name": "shop"}}, 400, "no App Catalog"},
		{"list not connected", "GET", base, nil, 503, "not connected"},
		{"unknown cluster", "GET", "/api/v1/clusters/c-nothere000/releases", nil, 404, "no such cluster"},
		{"unknown operation", "GET", "/api/v1/operations/op-nothere000", nil, 404, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := w.call(tc.method, tc.path, "", tc.body, nil)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %s, want %d with %q", code, msg, tc.code, tc.want)
			}
		})
	}
	var ops struct{ Items []apps.OperationJSON }
	w.call("GET", "/api/v1/clusters/"+c.ID+"/operations", "", nil, &ops)
	if len(ops.Items) != 0 {
		t.Fatalf("refused requests left operations: %+v", ops.Items)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+base, nil)
	resp, err := h.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
}
