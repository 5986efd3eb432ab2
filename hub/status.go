package hub

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// statusTracker turns tunnel events into each cluster's operator status in
// the store. Events arrive on tunnel goroutines and are applied in order by
// one goroutine the tracker owns, so a slow store never stalls a tunnel and
// transitions are never reordered.
type statusTracker struct {
	store   store.Store
	logger  *slog.Logger
	now     func() time.Time
	metrics *metrics

	items chan statusItem
	stop  chan struct{}
	wg    sync.WaitGroup

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

// Reasons the hub records.
const (
	reasonConnected = "agent connected"
	reasonReady     = "agent connected and its API server answers"
)

func newStatusTracker(s store.Store, logger *slog.Logger, now func() time.Time, m *metrics) *statusTracker {
	t := &statusTracker{
		store: s, logger: logger.With("component", "status"), now: now, metrics: m,
		items:  make(chan statusItem, 4096),
		stop:   make(chan struct{}),
		latest: map[string]uint64{},
		state:  map[string]store.State{},
	}
	t.wg.Add(1)
	go t.run()
	return t
}

// event is the tunnel's Events hook. Heartbeats are dropped when the queue
// is full (the next one will do); transitions wait for room.
func (t *statusTracker) event(ev tunnel.Event) {
	item := statusItem{event: &ev}
	if ev.Kind == tunnel.EventHeartbeat {
		select {
		case t.items <- item:
		default:
		}
		return
	}
	select {
	case t.items <- item:
	case <-t.stop:
	}
}

// record queues a status update that does not come from a session.
func (t *statusTracker) record(clusterID string, u store.StatusUpdate) {
	select {
	case t.items <- statusItem{clusterID: clusterID, update: u}:
	case <-t.stop:
	}
}

// note queues a history note that changes no state (Store.NoteStatus).
func (t *statusTracker) note(clusterID, note string) {
	select {
	case t.items <- statusItem{clusterID: clusterID, note: note}:
	case <-t.stop:
	}
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
		select {
		case it := <-t.items:
			t.apply(it)
		case <-t.stop:
			for {
				select {
				case it := <-t.items:
					t.apply(it)
				default:
					return
				}
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
	}
}
