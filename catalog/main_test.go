package catalog_test

import (
	"io"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // the test registry's request log
	// The in-process registry (distribution) keeps a notification
	// broadcaster for the process; the catalog's own goroutines must end.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}
