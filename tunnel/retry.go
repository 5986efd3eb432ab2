package tunnel

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/eco-project/eco/tunnel/mux"
)

// ErrRefused means the agent refused a stream unread: its accept backlog
// (MuxConfig.AcceptBacklog) was full, as in a burst of hundreds of new
// streams at once, such as Argo CD opening its watches. A request on a
// refused stream was never seen by the agent, so sending it again is safe.
var ErrRefused = mux.ErrRefused

// RetryRefused wraps next, a transport that dials through Server.DialAddr,
// so that a request refused with ErrRefused is sent again, after
// refusedBackoff and then twice as long before each further attempt (six
// in all, about 1.3 s), and the refusal is returned only after that. Only
// requests without a body are sent again: a body already read cannot be
// replayed. If the request's context ends while waiting, its error is
// returned.
func RetryRefused(next http.RoundTripper) http.RoundTripper {
	return retryRefused{next: next, sleep: sleepCtx}
}

type retryRefused struct {
	next  http.RoundTripper
	sleep func(ctx context.Context, d time.Duration) error
}

const (
	refusedRetries = 6
	refusedBackoff = 20 * time.Millisecond
)

func (t retryRefused) RoundTrip(r *http.Request) (*http.Response, error) {
	backoff := refusedBackoff
	for attempt := 0; ; attempt++ {
		resp, err := t.next.RoundTrip(r)
		if err == nil || !errors.Is(err, ErrRefused) || attempt == refusedRetries ||
			(r.Body != nil && r.Body != http.NoBody) {
			return resp, err
		}
		if err := t.sleep(r.Context(), backoff); err != nil {
			return nil, err
		}
		backoff *= 2
	}
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
