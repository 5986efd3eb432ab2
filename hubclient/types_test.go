package hubclient_test

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/hubclient"
)

// TestTypesMirrorTheHub: hubclient's types of the App Catalog, the Helm
// service, the add-ons and Argo CD mirror the hub's own (which ecoctl does
// not link, to stay free of Helm): the same JSON fields, of the same
// kinds. A field added, renamed or retyped on either side fails here.
func TestTypesMirrorTheHub(t *testing.T) {
	for _, tc := range []struct {
		client, hub any
	}{
		{hubclient.Repository{}, catalog.RepositoryStatus{}},
		{hubclient.RepositoryRequest{}, catalog.RepositoryInput{}},
		{hubclient.ChartHit{}, catalog.Hit{}},
		{hubclient.ChartVersion{}, catalog.VersionInfo{}},
		{hubclient.ChartPage{}, catalog.Page{}},
		{hubclient.Release{}, apps.Release{}},
		{hubclient.ReleaseDetails{}, apps.Details{}},
		{hubclient.ChartSpec{}, apps.ChartJSON{}},
		{hubclient.InstallRequest{}, apps.InstallJSON{}},
		{hubclient.Preview{}, apps.Preview{}},
		{hubclient.Operation{}, apps.OperationJSON{}},
		{hubclient.ChartRef{}, apps.ChartRef{}},
		{hubclient.Addon{}, addons.Addon{}},
		{hubclient.AddonRollout{}, addons.Rollout{}},
		{hubclient.AddonStatus{}, addons.Status{}},
		{hubclient.ArgoCDView{}, argocd.ClusterView{}},
		{hubclient.ArgoCDRegistration{}, argocd.Registration{}},
		{hubclient.ArgoCDApplication{}, argocd.Application{}},
	} {
		ct, ht := reflect.TypeOf(tc.client), reflect.TypeOf(tc.hub)
		t.Run(ct.Name(), func(t *testing.T) {
			got, want := jsonFields(ct), jsonFields(ht)
			for _, k := range slices.Sorted(maps.Keys(want)) {
				if got[k] != want[k] {
					t.Errorf("field %q: hubclient.%s has %q, %s has %q", k, ct.Name(), got[k], ht, want[k])
				}
			}
			for _, k := range slices.Sorted(maps.Keys(got)) {
				if _, ok := want[k]; !ok {
					t.Errorf("field %q: hubclient.%s has it, %s does not", k, ct.Name(), ht)
				}
			}
		})
	}
}

// jsonFields maps t's JSON field names to their kinds, embedded structs'
// fields included.
func jsonFields(t reflect.Type) map[string]string {
	out := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && name == "":
			maps.Copy(out, jsonFields(f.Type))
			continue
		case name == "":
			name = f.Name
		}
		out[name] = kind(f.Type)
	}
	return out
}

var timeType = reflect.TypeOf(time.Time{})

// kind is how a type looks in JSON.
func kind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return "time"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return "string" // base64
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "[]" + kind(t.Elem())
	case reflect.Map:
		return "map[" + kind(t.Key()) + "]" + kind(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Interface:
		return "any"
	}
	return t.Kind().String()
}
