package tunnel

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff defaults.
const (
	DefaultBackoffInitial = 250 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
)

// Backoff paces reconnect attempts: capped exponential growth with full
// jitter, so the n-th delay is uniform in [0, min(Max, Initial·2ⁿ)). Full
// jitter spreads a fleet of agents that lost the hub at the same moment over
// the whole window instead of letting them return in waves. A Backoff is
// used by one loop at a time; the zero value is ready to use.
//
//	var b tunnel.Backoff
//	for {
//		s, err := tunnel.Dial(ctx, cfg)
//		if err == nil {
//			b.Reset()
//			... serve until s.Done() ...
//			continue
//		}
//		if err := b.Wait(ctx); err != nil {
//			return err // ctx ended
//		}
//	}
type Backoff struct {
	// Initial is the ceiling of the first delay. If zero,
	// DefaultBackoffInitial (250 ms).
	Initial time.Duration
	// Max caps every delay. If zero, DefaultBackoffMax (30 s).
	Max time.Duration
	// Rand returns a uniform value in [0, 1). If nil, math/rand/v2.
	Rand func() float64

	attempt int // delays handed out since the last Reset
}

// Next returns the next delay and advances the attempt count.
func (b *Backoff) Next() time.Duration {
	initial, ceiling := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if ceiling <= 0 {
		ceiling = DefaultBackoffMax
	}
	window := ceiling
	if b.attempt < 62 { // beyond that the shift overflows; the cap applies anyway
		if w := initial << b.attempt; w > 0 && w < ceiling {
			window = w
		}
	}
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return time.Duration(r() * float64(window))
}

// Wait sleeps for Next(), or returns ctx.Err() as soon as ctx ends.
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset starts over from Initial; call it after a connection succeeded.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempt returns the number of delays handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }
