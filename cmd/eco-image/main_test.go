package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUsageErrors checks that bad command lines stop with a clear error
// before building or pushing anything.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "a command is required"},
		{[]string{"bake"}, `unknown command "bake"`},
		{[]string{"build"}, "--version is required"},
		{[]string{"build", "--version=v1", "--ca-certs=/nonexistent"}, "--ca-certs"},
		{[]string{"build", "--version=v1", "--source-date-epoch=yesterday"}, "SOURCE_DATE_EPOCH"},
		{[]string{"build", "--version=v1", "--ca-certs=main_test.go", "--module-dir=" + t.TempDir()}, "go generate ./catalog/chartrepo"},
		{[]string{"push"}, "--registry is required"},
		{[]string{"push", "--registry=localhost:1/eco", "--out=" + t.TempDir()}, "run eco-image build first"},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("eco-image %v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}
