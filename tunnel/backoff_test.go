package tunnel

import (
	"context"
	"testing"
	"time"
)

func TestBackoffWindows(t *testing.T) {
	top := func() float64 { return 0.999999 }
	for _, tc := range []struct {
		name string
		b    Backoff
		want []time.Duration // ceilings of successive delays
	}{
		{"defaults", Backoff{Rand: top}, []time.Duration{
			250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
			8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second,
		}},
		{"custom", Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Rand: top}, []time.Duration{
			100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			for i, ceil := range tc.want {
				d := b.Next()
				if d > ceil || d < ceil*99/100 {
					t.Fatalf("delay %d = %v, want just under %v", i, d, ceil)
				}
			}
			for range 100 { // far past the shift range: still capped
				if d := b.Next(); d > b.Max && b.Max != 0 || d > DefaultBackoffMax {
					t.Fatalf("delay %v past the cap", d)
				}
			}
			b.Reset()
			if d := b.Next(); d > tc.want[0] {
				t.Fatalf("after Reset: %v", d)
			}
		})
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	var b Backoff
	seen := map[time.Duration]bool{}
	var sum time.Duration
	const n = 1000
	for range n {
		b.Reset()
		d := b.Next()
		if d < 0 || d >= DefaultBackoffInitial {
			t.Fatalf("first delay %v outside [0, %v)", d, DefaultBackoffInitial)
		}
		seen[d/time.Millisecond] = true
		sum += d
	}
	// Full jitter: the mean is half the window, and values spread over it.
	if mean := sum / n; mean < 100*time.Millisecond || mean > 150*time.Millisecond {
		t.Fatalf("mean first delay %v, want about 125ms", mean)
	}
	if len(seen) < 150 {
		t.Fatalf("only %d distinct millisecond values in %d draws", len(seen), n)
	}
}

func TestBackoffWaitRespectsContext(t *testing.T) {
	b := Backoff{Initial: time.Hour, Max: time.Hour, Rand: func() float64 { return 0.5 }}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if err := b.Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Wait returned after %v", d)
	}
	// An already-ended context returns at once.
	if err := b.Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait = %v", err)
	}
	// And a short delay does elapse.
	short := Backoff{Initial: time.Millisecond, Rand: func() float64 { return 1 }}
	if err := short.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
