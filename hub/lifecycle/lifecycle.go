// Package lifecycle carries the events of a cluster's life in the hub —
// imported, connected, disconnected, failing, removed, deleted — to the
// hub's features (Argo CD registration, add-ons, cloud health), so that
// they react to them without reaching into the hub's internals.
//
// A [Bus] delivers every event to every subscriber in the order it was
// published, without ever blocking the publisher: each subscriber has a
// buffer of its own, and one that falls so far behind that its buffer is
// full misses events. It is then sent a [Lagged] event as soon as there is
// room again, and must resync its state from the store, as it does
// periodically anyway. Features are reconcilers: events say "look at this
// cluster now", the store says what is true.
package lifecycle

import (
	"sync"
	"time"
)

// Kind is what happened to a cluster.
type Kind string

// The kinds of events.
const (
	// Imported: the cluster was created in the hub.
	Imported Kind = "Imported"
	// Connected: its agent's tunnel is up and the agent reports the API
	// server healthy (also after Failing).
	Connected Kind = "Connected"
	// Disconnected: the tunnel was lost.
	Disconnected Kind = "Disconnected"
	// Failing: the tunnel is up but the agent cannot use its API server.
	Failing Kind = "Failing"
	// Removed: the agent said goodbye because its namespace is being
	// deleted.
	Removed Kind = "Removed"
	// Deleted: the cluster was deleted from the hub.
	Deleted Kind = "Deleted"
	// Updated: the cluster was renamed or its labels changed.
	Updated Kind = "Updated"
	// Lagged: this subscriber missed events (its buffer was full); resync
	// every cluster. ClusterID is empty.
	Lagged Kind = "Lagged"
)

// Event is one change in a cluster's life.
type Event struct {
	Kind      Kind
	ClusterID string
	// Reason is the status reason, when there is one.
	Reason string
	At     time.Time
}

// Bus fans events out to subscribers. The zero value is ready to use.
type Bus struct {
	mu   sync.Mutex
	subs map[*subscription]struct{}
}

type subscription struct {
	ch     chan Event
	lagged bool // guarded by Bus.mu: events were dropped since the last delivery
}

// Subscribe returns a channel of every event published from now on, with
// room for buffer events (at least 1), and a function that ends the
// subscription and closes the channel. Call it when done.
func (b *Bus) Subscribe(buffer int) (<-chan Event, func()) {
	if buffer < 1 {
		buffer = 1
	}
	s := &subscription{ch: make(chan Event, buffer)}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*subscription]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
			close(s.ch)
		})
	}
}

// Publish delivers e to every subscriber without blocking. A subscriber
// with a full buffer misses it and gets a Lagged event first once it has
// room again.
func (b *Bus) Publish(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.lagged {
			select {
			case s.ch <- Event{Kind: Lagged, At: e.At}:
				s.lagged = false
			default:
				continue // still full: e is missed too, Lagged covers it
			}
		}
		select {
		case s.ch <- e:
		default:
			s.lagged = true
		}
	}
}

// Subscribers returns how many subscriptions are open.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
