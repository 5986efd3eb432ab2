package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// statusTracker turns tunnel events into each cluster's operator status in
// the store. Events arrive on tunnel goroutines and are applied by one
// goroutine the tracker owns, so a slow store never stalls a tunnel. Each
// cluster has a queue of its own, applied in order (transitions are never
// reordered), and the goroutine takes one item from each cluster with
// work in turn: a cluster whose agent floods it with status reports waits
// for its own writes, never another cluster's. A heartbeat or status
// report replaces one of the same session still queued at the tail of its
// cluster's queue, so a flood costs one pending write, not one per report.
type statusTracker struct {
	store   store.Store
	logger  *slog.Logger
	now     func() time.Time
	metrics *metrics

	mu     sync.Mutex
	queues map[string][]statusItem // pending items per cluster, oldest first
	ready  []string                // clusters with pending items, each once, in turn
	wake   chan struct{}           // signalled (cap 1) when an item is queued
	stop   chan struct{}
	wg     sync.WaitGroup

	// events receives a lifecycle event for every change of state the
	// tracker writes.
	events *lifecycle.Bus
	// published is held from a state's write to its event's publication,
	// and by deleteCluster around the cluster's deletion: a state written
	// before the deletion has published its event by then, one after it
	// finds no cluster, so no state's event follows a cluster's Deleted
	// (a subscriber that forgot a deleted cluster never then hears it
	// Disconnected).
	published sync.Mutex

	// Owned by the run goroutine.
	latest map[string]uint64      // newest session ID per cluster
	state  map[string]store.State // last state written per cluster
}

// statusItem is a tunnel event or a direct status update.
type statusItem struct {
	event     *tunnel.Event
	clusterID string
	update    store.StatusUpdate
	note      string // if not empty, a history note instead of update
}

// maxQueuedPerCluster bounds a cluster's queue for heartbeats and status
// reports: beyond it they are dropped (transitions are always queued).
const maxQueuedPerCluster = 64

// lifecycleKinds are the operator states that are lifecycle events.
var lifecycleKinds = map[store.State]lifecycle.Kind{
	store.StateConnected:    lifecycle.Connected,
	store.StateDisconnected: lifecycle.Disconnected,
	store.StateFailing:      lifecycle.Failing,
	store.StateRemoved:      lifecycle.Removed,
}

// Reasons the hub records.
const (
	reasonConnected = "agent connected"
	reasonReady     = "agent connected and its API server answers"
)

func newStatusTracker(s store.Store, logger *slog.Logger, now func() time.Time, m *metrics, events *lifecycle.Bus) *statusTracker {
	t := &statusTracker{
		store: s, logger: logger.With("component", "status"), now: now, metrics: m, events: events,
		queues: map[string][]statusItem{},
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		latest: map[string]uint64{},
		state:  map[string]store.State{},
	}
	t.wg.Add(1)
	go t.run()
	return t
}

// event is the tunnel's Events hook. It never blocks.
func (t *statusTracker) event(ev tunnel.Event) {
	t.enqueue(ev.ClusterID, statusItem{event: &ev})
}

// record queues a status update that does not come from a session.
func (t *statusTracker) record(clusterID string, u store.StatusUpdate) {
	t.enqueue(clusterID, statusItem{clusterID: clusterID, update: u})
}

// coalescable reports whether it may replace, or be dropped for, a later
// item of its cluster: heartbeats and status reports are.
func (it statusItem) coalescable() bool {
	return it.event != nil && (it.event.Kind == tunnel.EventHeartbeat || it.event.Kind == tunnel.EventStatus)
}

func (t *statusTracker) enqueue(id string, it statusItem) {
	t.mu.Lock()
	q, pending := t.queues[id]
	switch {
	case it.coalescable() && len(q) > 0 && q[len(q)-1].coalescable() &&
		q[len(q)-1].event.Kind == it.event.Kind && q[len(q)-1].event.SessionID == it.event.SessionID:
		q[len(q)-1] = it
	case it.coalescable() && len(q) >= maxQueuedPerCluster:
	default:
		t.queues[id] = append(q, it)
		if !pending {
			t.ready = append(t.ready, id)
		}
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// next takes the next item: the oldest of the cluster whose turn it is.
func (t *statusTracker) next() (statusItem, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.ready) == 0 {
		return statusItem{}, false
	}
	id := t.ready[0]
	t.ready[0] = ""
	t.ready = t.ready[1:]
	q := t.queues[id]
	it := q[0]
	if len(q) == 1 {
		delete(t.queues, id)
	} else {
		q[0] = statusItem{}
		t.queues[id] = q[1:]
		t.ready = append(t.ready, id)
	}
	if len(t.ready) == 0 {
		t.ready = nil
	}
	return it, true
}

// note queues a history note that changes no state (Store.NoteStatus).
func (t *statusTracker) note(clusterID, note string) {
	t.enqueue(clusterID, statusItem{clusterID: clusterID, note: note})
}

// close applies what is queued and stops the goroutine.
func (t *statusTracker) close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	t.wg.Wait()
}

func (t *statusTracker) run() {
	defer t.wg.Done()
	for {
		if it, ok := t.next(); ok {
			t.apply(it)
			continue
		}
		select {
		case <-t.wake:
		case <-t.stop:
			for {
				it, ok := t.next()
				if !ok {
					return
				}
				t.apply(it)
			}
		}
	}
}

func (t *statusTracker) apply(it statusItem) {
	if it.note != "" {
		ctx, cancel := bg(10 * time.Second)
		defer cancel()
		if err := t.store.NoteStatus(ctx, it.clusterID, it.note); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.logger.Error("noting status", "cluster", it.clusterID, "err", err)
		}
		return
	}
	if it.event == nil {
		t.write(it.clusterID, it.update)
		return
	}
	ev := it.event
	id := ev.ClusterID
	switch ev.Kind {
	case tunnel.EventConnected:
		t.latest[id] = ev.SessionID
		t.write(id, store.StatusUpdate{
			State: store.StateConnected, Reason: reasonConnected, Heartbeat: true,
			AgentVersion: ev.Hello.AgentVersion, KubernetesVersion: ev.Hello.KubernetesVersion,
		})
	case tunnel.EventHeartbeat:
		if t.latest[id] != ev.SessionID {
			return
		}
		st, ok := t.state[id]
		if !ok {
			return
		}
		t.write(id, store.StatusUpdate{State: st, Heartbeat: true, RTT: ev.RTT})
	case tunnel.EventStatus:
		if t.latest[id] != ev.SessionID {
			return
		}
		u := store.StatusUpdate{State: store.StateConnected, Reason: reasonReady}
		if ev.Status.State != tunnel.StateReady {
			u = store.StatusUpdate{State: store.StateFailing, Reason: ev.Status.Reason}
			if u.Reason == "" {
				u.Reason = "the agent reports " + string(ev.Status.State)
			}
		}
		t.write(id, u)
	case tunnel.EventGoodbye:
		reason := ev.Reason
		if reason == "" {
			reason = "the agent was removed from its cluster"
		}
		t.write(id, store.StatusUpdate{State: store.StateRemoved, Reason: reason})
	case tunnel.EventDisconnected:
		if t.latest[id] != ev.SessionID {
			return // an older session replaced by a newer one
		}
		delete(t.latest, id)
		if t.state[id] == store.StateRemoved {
			return
		}
		reason := "tunnel closed"
		if ev.Err != nil {
			reason = "tunnel lost: " + ev.Err.Error()
		}
		t.write(id, store.StatusUpdate{State: store.StateDisconnected, Reason: reason})
	}
}

func (t *statusTracker) write(id string, u store.StatusUpdate) {
	ctx, cancel := bg(10 * time.Second)
	defer cancel()
	t.published.Lock()
	defer t.published.Unlock()
	before, known := t.state[id]
	st, err := t.store.UpdateStatus(ctx, id, u)
	if errors.Is(err, store.ErrNotFound) {
		delete(t.state, id) // deleted from the hub meanwhile
		return
	}
	if err != nil {
		t.logger.Error("recording status", "cluster", id, "state", u.State, "err", err)
		return
	}
	t.state[id] = st.State
	if !known || before != st.State {
		t.metrics.transitions.WithLabelValues(string(st.State)).Inc()
		t.logger.Info("operator status", "cluster", id, "state", st.State, "reason", st.Reason)
		if kind, ok := lifecycleKinds[st.State]; ok && t.events != nil {
			t.events.Publish(lifecycle.Event{Kind: kind, ClusterID: id, Reason: st.Reason, At: st.Since})
		}
	}
}

// deleteCluster deletes cluster id from the store with no state write
// between its store write and its event (see published).
func (t *statusTracker) deleteCluster(ctx context.Context, id string) error {
	t.published.Lock()
	defer t.published.Unlock()
	return t.store.DeleteCluster(ctx, id)
}
