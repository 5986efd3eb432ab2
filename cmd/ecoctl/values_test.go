package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hubclient"
)

// TestValues: -f files merged in order over a release's values, then
// --set and --set-string, typed as Helm types them; bad arguments say why.
func TestValues(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := file("a.yaml", "replicaCount: 1\nimage:\n  repository: r\n  tag: \"1\"\nlist: [x]\n")
	b := file("b.yaml", "image:\n  tag: \"2\"\nextra: true\n")
	for _, tc := range []struct {
		name  string
		flags valueFlags
		stdin string
		base  map[string]any
		want  string // YAML; "" for none
		err   string
	}{
		{name: "none", want: ""},
		{name: "files merge in order", flags: valueFlags{files: []string{a, b}},
			want: "extra: true\nimage:\n  repository: r\n  tag: \"2\"\nlist:\n- x\nreplicaCount: 1\n"},
		{name: "a file from stdin", flags: valueFlags{files: []string{"-"}}, stdin: "greeting: hi\n", want: "greeting: hi\n"},
		{name: "set types as Helm", flags: valueFlags{set: []string{"a=true,b=FALSE,c=null,d=42,e=007,f=1.5,g=0,h=text,i="}},
			want: "a: true\nb: false\nc: null\nd: 42\ne: \"007\"\nf: \"1.5\"\ng: 0\nh: text\ni: \"\"\n"},
		{name: "set-string keeps strings", flags: valueFlags{setString: []string{"a=true,b=42"}}, want: "a: \"true\"\nb: \"42\"\n"},
		{name: "nested keys and escaped dots", flags: valueFlags{set: []string{`image.tag=3`, `annotations.eco\.dev/x=y`}},
			want: "annotations:\n  eco.dev/x: \"y\"\nimage:\n  tag: 3\n"},
		{name: "lists", flags: valueFlags{set: []string{"args={--a,--b},ports={80,443},none={}"}},
			want: "args:\n- --a\n- --b\nnone: []\nports:\n- 80\n- 443\n"},
		{name: "set over files over the base", flags: valueFlags{files: []string{b}, set: []string{"image.repository=s"}},
			base: map[string]any{"image": map[string]any{"repository": "r", "tag": "1"}, "kept": "yes"},
			want: "extra: true\nimage:\n  repository: s\n  tag: \"2\"\nkept: \"yes\"\n"},
		{name: "set replaces a map with a scalar", flags: valueFlags{files: []string{a}, set: []string{"image=none"}},
			want: "image: none\nlist:\n- x\nreplicaCount: 1\n"},
		{name: "no =", flags: valueFlags{set: []string{"a"}}, err: `"a": want KEY=VALUE`},
		{name: "an empty key part", flags: valueFlags{set: []string{"a..b=1"}}, err: "an empty part"},
		{name: "an index", flags: valueFlags{set: []string{"a[0]=1"}}, err: "list indexes are not supported"},
		{name: "an open brace", flags: valueFlags{set: []string{"a={x,y"}}, err: "unmatched {"},
		{name: "a missing file", flags: valueFlags{files: []string{filepath.Join(dir, "nope.yaml")}}, err: "values file"},
		{name: "not YAML", flags: valueFlags{files: []string{file("bad.yaml", "a: [")}}, err: "bad.yaml"},
		{name: "stdin twice", flags: valueFlags{files: []string{"-", "-"}}, err: "stdin can be read once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.flags.merged(strings.NewReader(tc.stdin), tc.base)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("values:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
	// The base is not changed.
	base := map[string]any{"image": map[string]any{"tag": "1"}}
	f := valueFlags{set: []string{"image.tag=2"}}
	if _, err := f.merged(strings.NewReader(""), base); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	yaml.Unmarshal([]byte("image: {tag: \"1\"}"), &want)
	if !reflect.DeepEqual(base, want) {
		t.Errorf("the base was changed: %v", base)
	}
}

// TestLogTail: each line of an operation's log is printed once, also when
// the hub cut the log's start; a last line without a newline only at the
// end.
func TestLogTail(t *testing.T) {
	var tail logTail
	steps := []struct {
		log   string
		final bool
		want  string
	}{
		{"", false, ""},
		{"a\nb", false, "a\n"},
		{"a\nb\nc\n", false, "b\nc\n"},
		{"a\nb\nc\n", false, ""},
		// The hub kept only the last bytes: resume after "c".
		{"b\nc\nd\ne\n", false, "d\ne\n"},
		{"d\ne\nf", true, "f\n"},
	}
	for i, s := range steps {
		if got := tail.next(s.log, s.final); got != s.want {
			t.Errorf("step %d (%q): printed %q, want %q", i, s.log, got, s.want)
		}
	}
}

// TestRepoStatus: the STATUS column of `catalog repos list` says, in
// order, a refresh running, a failed one, built-in charts missing, and
// what a successful refresh noticed (an OCI discovery capped).
func TestRepoStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		repo hubclient.Repository
		want string
	}{
		{"fresh", hubclient.Repository{}, "ok"},
		{"refreshing", hubclient.Repository{Refreshing: true, Progress: "3 of 9 repositories read", Notice: "old"}, "refreshing: 3 of 9 repositories read"},
		{"failed", hubclient.Repository{RefreshError: "401", Notice: "old"}, "error: 401"},
		{"missing", hubclient.Repository{Missing: map[string]string{"b": "x", "a": "y"}}, "missing: a, b"},
		{"notice", hubclient.Repository{Notice: "only the first 500 repositories were read"}, "ok: only the first 500 repositories were read"},
	} {
		rows := repoRows([]hubclient.Repository{tc.repo})
		if got := rows[0][len(repoHeader)-1]; got != tc.want {
			t.Errorf("%s: STATUS %q, want %q", tc.name, got, tc.want)
		}
	}
}
