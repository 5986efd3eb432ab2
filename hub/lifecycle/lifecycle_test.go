package lifecycle_test

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/eco-project/eco/hub/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func drain(ch <-chan lifecycle.Event) []lifecycle.Kind {
	var got []lifecycle.Kind
	for {
		select {
		case e := <-ch:
			got = append(got, e.Kind)
		default:
			return got
		}
	}
}

func TestBus(t *testing.T) {
	tests := []struct {
		name    string
		buffer  int
		publish []lifecycle.Kind
		// read, if set, is read after that many publishes, then the rest.
		want []lifecycle.Kind
	}{
		{"in order", 8, []lifecycle.Kind{lifecycle.Imported, lifecycle.Connected, lifecycle.Failing, lifecycle.Connected},
			[]lifecycle.Kind{lifecycle.Imported, lifecycle.Connected, lifecycle.Failing, lifecycle.Connected}},
		{"a full buffer drops what does not fit", 2, []lifecycle.Kind{lifecycle.Imported, lifecycle.Connected, lifecycle.Disconnected, lifecycle.Deleted},
			[]lifecycle.Kind{lifecycle.Imported, lifecycle.Connected}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b lifecycle.Bus
			ch, cancel := b.Subscribe(tt.buffer)
			defer cancel()
			for _, k := range tt.publish {
				b.Publish(lifecycle.Event{Kind: k, ClusterID: "c-1"})
			}
			got := drain(ch)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestLaggedSubscriberIsTold: after missing events, a subscriber is sent
// Lagged before the next event it can take, and a slow subscriber never
// holds up another.
func TestLaggedSubscriberIsTold(t *testing.T) {
	var b lifecycle.Bus
	slow, cancelSlow := b.Subscribe(2)
	fast, cancelFast := b.Subscribe(16)
	defer cancelSlow()
	defer cancelFast()
	b.Publish(lifecycle.Event{Kind: lifecycle.Imported})
	b.Publish(lifecycle.Event{Kind: lifecycle.Connected})
	b.Publish(lifecycle.Event{Kind: lifecycle.Failing}) // slow misses it
	if got := drain(slow); len(got) != 2 || got[1] != lifecycle.Connected {
		t.Fatalf("slow got %v, want [Imported Connected]", got)
	}
	b.Publish(lifecycle.Event{Kind: lifecycle.Disconnected})
	if got := drain(slow); len(got) != 2 || got[0] != lifecycle.Lagged || got[1] != lifecycle.Disconnected {
		t.Fatalf("slow got %v after draining, want [Lagged Disconnected]", got)
	}
	b.Publish(lifecycle.Event{Kind: lifecycle.Deleted})
	if got := drain(slow); len(got) != 1 || got[0] != lifecycle.Deleted {
		t.Fatalf("slow got %v, want [Deleted]", got)
	}
	if got := drain(fast); len(got) != 5 {
		t.Fatalf("fast got %v, want all 5", got)
	}
}

// TestUnsubscribe: cancel closes the channel, may be called twice, and
// publishing concurrently with it is safe.
func TestUnsubscribe(t *testing.T) {
	var b lifecycle.Bus
	var wg sync.WaitGroup
	for range 8 {
		ch, cancel := b.Subscribe(4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ch {
			}
		}()
		go func() { b.Publish(lifecycle.Event{Kind: lifecycle.Imported}); cancel(); cancel() }()
	}
	wg.Wait()
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after cancel", n)
	}
}
