// Package audit is the hub's audit log: who (hub user, token) did what
// (verb, resource, namespace, name) to which cluster, when, with what
// result, under which request ID.
//
// A [Recorder] takes events from the request path without waiting on the
// store: Record only queues, and one goroutine writes what is queued in
// batches, to the store and, when configured, as JSON lines to a writer
// (a file or stdout, for a log shipper). The queue is bounded; when the
// store falls so far behind that it fills, further events are dropped,
// counted in eco_audit_dropped_total and logged, rather than slowing every
// request of every user.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/store"
)

// Appender is where a Recorder writes: the hub's store.
type Appender interface {
	AppendAudit(ctx context.Context, events []store.AuditEvent) error
}

// Config configures a Recorder.
type Config struct {
	// Store receives every event. Required.
	Store Appender
	// JSONLines, when set, also receives every event as one JSON object
	// per line, in the order they were recorded. Writes are serialised.
	JSONLines io.Writer
	// QueueSize bounds the events waiting to be written. Zero means 8192.
	QueueSize int
	// BatchSize is the most events written in one store transaction. Zero
	// means 256.
	BatchSize int
	// Registerer receives the recorder's metrics. Nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives write failures and drops. Nil discards them.
	Logger *slog.Logger
	// Now stamps events recorded without a time. Nil means time.Now.
	Now func() time.Time
}

// Recorder queues audit events and writes them in the background. Create
// it with New; Close flushes what is queued and stops it.
type Recorder struct {
	cfg   Config
	queue chan store.AuditEvent
	// done is closed by Close; exited by the writer once it has flushed.
	done, exited chan struct{}
	once         sync.Once

	lastDropLog atomic.Int64 // unix nanoseconds: drops are logged at most once a second

	recorded *prometheus.CounterVec
	dropped  prometheus.Counter
	failed   prometheus.Counter
}

// New validates cfg and starts the Recorder's writer.
func New(cfg Config) (*Recorder, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Store is required")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Recorder{
		cfg:    cfg,
		queue:  make(chan store.AuditEvent, cfg.QueueSize),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_audit_events_total", Help: "Audit events written to the store, by source (api, ui, proxy, hub).",
		}, []string{"source"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_audit_dropped_total", Help: "Audit events dropped because the queue to the store was full.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_audit_write_errors_total", Help: "Batches of audit events the store refused.",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.recorded, r.dropped, r.failed} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	go r.run() // owned: Close stops it and waits
	return r, nil
}

// Record queues e without blocking. Its time is now unless set.
func (r *Recorder) Record(e store.AuditEvent) {
	if e.At.IsZero() {
		e.At = r.cfg.Now()
	}
	select {
	case <-r.done:
		r.dropped.Inc()
		return
	default:
	}
	select {
	case r.queue <- e:
	default:
		r.dropped.Inc()
		now := time.Now().UnixNano()
		if last := r.lastDropLog.Load(); now-last < int64(time.Second) || !r.lastDropLog.CompareAndSwap(last, now) {
			return
		}
		r.cfg.Logger.Warn("audit event dropped: the queue to the store is full", "user", e.User, "verb", e.Verb, "cluster", e.ClusterID, "request_id", e.RequestID)
	}
}

// Close writes every queued event and stops the writer. Events recorded
// after Close are dropped and counted.
func (r *Recorder) Close() error {
	r.once.Do(func() { close(r.done) })
	<-r.exited
	return nil
}

// run writes batches until Close, then drains the queue.
func (r *Recorder) run() {
	defer close(r.exited)
	batch := make([]store.AuditEvent, 0, r.cfg.BatchSize)
	for {
		select {
		case e := <-r.queue:
			batch = append(batch[:0], e)
			batch = r.fill(batch)
			r.write(batch)
		case <-r.done:
			for {
				batch = r.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				r.write(batch)
			}
		}
	}
}

// fill adds what is queued to batch, up to BatchSize, without waiting.
func (r *Recorder) fill(batch []store.AuditEvent) []store.AuditEvent {
	for len(batch) < r.cfg.BatchSize {
		select {
		case e := <-r.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (r *Recorder) write(batch []store.AuditEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.cfg.Store.AppendAudit(ctx, batch); err != nil {
		r.failed.Inc()
		r.cfg.Logger.Error("writing audit events to the store", "events", len(batch), "err", err)
	} else {
		for _, e := range batch {
			r.recorded.WithLabelValues(e.Source).Inc()
		}
	}
	if r.cfg.JSONLines != nil {
		buf := make([]byte, 0, 512*len(batch))
		for _, e := range batch {
			line, err := json.Marshal(EventJSONOf(e))
			if err != nil {
				continue
			}
			buf = append(append(buf, line...), '\n')
		}
		if _, err := r.cfg.JSONLines.Write(buf); err != nil {
			r.cfg.Logger.Error("writing audit events as JSON lines", "events", len(batch), "err", err)
		}
	}
}

// EventJSON is an audit event as the API and the JSON-lines log show it.
type EventJSON struct {
	Seq             int64     `json:"seq,omitempty"`
	Time            time.Time `json:"time"`
	User            string    `json:"user"`
	TokenID         string    `json:"tokenId,omitempty"`
	Source          string    `json:"source"`
	Verb            string    `json:"verb"`
	ClusterID       string    `json:"clusterId,omitempty"`
	APIGroup        string    `json:"apiGroup,omitempty"`
	Resource        string    `json:"resource,omitempty"`
	Subresource     string    `json:"subresource,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name,omitempty"`
	Path            string    `json:"path,omitempty"`
	Code            int       `json:"code"`
	RequestID       string    `json:"requestId,omitempty"`
	ClientRequestID string    `json:"clientRequestId,omitempty"`
	RemoteAddr      string    `json:"remoteAddr,omitempty"`
}

// EventJSONOf converts a stored event.
func EventJSONOf(e store.AuditEvent) EventJSON {
	return EventJSON{
		Seq: e.Seq, Time: e.At.UTC(), User: e.User, TokenID: e.TokenID, Source: e.Source, Verb: e.Verb,
		ClusterID: e.ClusterID, APIGroup: e.APIGroup, Resource: e.Resource, Subresource: e.Subresource,
		Namespace: e.Namespace, Name: e.Name, Path: e.Path, Code: e.Code, RequestID: e.RequestID,
		ClientRequestID: e.ClientRequestID, RemoteAddr: e.RemoteAddr,
	}
}
