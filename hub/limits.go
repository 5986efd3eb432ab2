package hub

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what one hub user, or the users of one cluster together,
// may hold open through the proxy, and how long a request body may take to
// arrive. A zero field takes its default (the Default… constants); a
// negative one switches that limit off. docs/decisions/0010-hub-limits.md
// explains the defaults.
type Limits struct {
	// StreamsPerUser caps the proxied requests one hub user has in flight
	// at once, long-running ones included. Default DefaultStreamsPerUser.
	StreamsPerUser int
	// StreamsPerCluster caps the proxied requests in flight to one
	// cluster, all users together. Default DefaultStreamsPerCluster.
	StreamsPerCluster int
	// WatchesPerUser caps one user's long-running requests (watches,
	// followed logs, exec, attach, port-forward). Default
	// DefaultWatchesPerUser.
	WatchesPerUser int
	// WatchesPerCluster caps the long-running requests to one cluster.
	// Default DefaultWatchesPerCluster.
	WatchesPerCluster int
	// RetryAfter is what a refusal over a cap tells the client to wait
	// (Retry-After, whole seconds, at least 1). Default DefaultRetryAfter.
	RetryAfter time.Duration
	// BodyTimeout bounds the time from a request's head to the end of its
	// body, for every request with a body except protocol upgrades: a
	// body that drips slower fails and its connection is closed. Default
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
}

// Default limits; decision 0010 has the measurements behind them.
const (
	DefaultStreamsPerUser    = 250
	DefaultStreamsPerCluster = 1000
	DefaultWatchesPerUser    = 150
	DefaultWatchesPerCluster = 750
	DefaultRetryAfter        = time.Second
	DefaultBodyTimeout       = 2 * time.Minute
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.StreamsPerUser, DefaultStreamsPerUser)
	def(&l.StreamsPerCluster, DefaultStreamsPerCluster)
	def(&l.WatchesPerUser, DefaultWatchesPerUser)
	def(&l.WatchesPerCluster, DefaultWatchesPerCluster)
	if l.RetryAfter <= 0 {
		l.RetryAfter = DefaultRetryAfter
	}
	if l.BodyTimeout == 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	return l
}

// Reasons a request is refused over a cap, as the metric and the message
// name them.
const (
	capUserStreams     = "user-streams"
	capClusterStreams  = "cluster-streams"
	capUserWatches     = "user-watches"
	capClusterWatches  = "cluster-watches"
	clusterLabelOther  = "unknown"
	verbLabelOther     = "other"
	maxClientRequestID = 64
)

// streamCaps counts the proxied requests in flight per user and per
// cluster. Its maps hold only keys with requests in flight, so their size
// is bounded by the requests themselves.
type streamCaps struct {
	limits Limits

	mu      sync.Mutex
	streams map[capKey]int
	watches map[capKey]int
}

// capKey is a user (cluster false) or a cluster.
type capKey struct {
	cluster bool
	name    string
}

func newStreamCaps(l Limits) *streamCaps {
	return &streamCaps{limits: l, streams: map[capKey]int{}, watches: map[capKey]int{}}
}

// acquire takes a slot for a request of user to cluster, long-running if
// watch. It returns the release func, or the cap that refused it.
func (c *streamCaps) acquire(user, cluster string, watch bool) (release func(), refused string) {
	if strings.HasPrefix(user, ServicePrefix) {
		// A service identity (Argo CD: ~60 watches in each of a thousand
		// clusters) is one user everywhere: its per-user caps apply per
		// cluster.
		user += "\x00" + cluster
	}
	u, cl := capKey{name: user}, capKey{cluster: true, name: cluster}
	c.mu.Lock()
	defer c.mu.Unlock()
	over := func(n, limit int) bool { return limit >= 0 && n >= limit }
	switch {
	case over(c.streams[u], c.limits.StreamsPerUser):
		return nil, capUserStreams
	case over(c.streams[cl], c.limits.StreamsPerCluster):
		return nil, capClusterStreams
	case watch && over(c.watches[u], c.limits.WatchesPerUser):
		return nil, capUserWatches
	case watch && over(c.watches[cl], c.limits.WatchesPerCluster):
		return nil, capClusterWatches
	}
	c.streams[u]++
	c.streams[cl]++
	if watch {
		c.watches[u]++
		c.watches[cl]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			dec(c.streams, u)
			dec(c.streams, cl)
			if watch {
				dec(c.watches, u)
				dec(c.watches, cl)
			}
		})
	}, ""
}

func dec(m map[capKey]int, k capKey) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// tooMany answers a request refused over cap with 429 Too Many Requests,
// Retry-After and a Kubernetes Status, which client-go and kubectl retry.
func tooMany(w http.ResponseWriter, retryAfter time.Duration, cap, who string) {
	secs := max(1, int(retryAfter.Round(time.Second)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeKubeStatus(w, http.StatusTooManyRequests, "TooManyRequests",
		"eco: too many concurrent requests ("+cap+" cap) for "+who+"; retry later")
}

// bodyDeadline makes r's body fail once BodyTimeout has passed since the
// request arrived, and clears the connection's read deadline when the body
// has been read. Requests without a body and protocol upgrades (exec,
// attach, port-forward, the agents' tunnel), whose connection outlives
// the request, are left alone.
func bodyDeadline(w http.ResponseWriter, r *http.Request, d time.Duration) {
	if d < 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 ||
		r.Header.Get("Upgrade") != "" || r.Method == http.MethodConnect {
		return
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), deadline: time.Now().Add(d)}
}

// deadlineBody sets its connection's read deadline at the first Read and
// clears it at the end of the body.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	deadline time.Time
	armed    bool
	done     bool
	// expired is set when a Read failed at the deadline; complete when
	// the body was read to its end.
	expired, complete atomic.Bool
}

// bodyExpired reports whether body is a request body cut off at its
// deadline: a Read failed at it, or it has passed with the body not read
// to its end. The second covers the moment between the two, when the
// server has cancelled the request and the Read that will fail has not
// returned yet.
func bodyExpired(body io.Reader) bool {
	b, ok := body.(*deadlineBody)
	return ok && (b.expired.Load() || !b.complete.Load() && !time.Now().Before(b.deadline))
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if !b.armed {
		b.armed = true
		if err := b.rc.SetReadDeadline(b.deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return 0, err
		}
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.complete.Store(true)
	}
	if err != nil && !b.done {
		b.done = true
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.expired.Store(true)
		} else {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}
