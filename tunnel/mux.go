package tunnel

import (
	"io"
	"log/slog"
	"time"

	"github.com/eco-project/eco/tunnel/mux"
)

// Multiplexer defaults (see docs/decisions/0005-own-multiplexer.md for the
// measurements behind them).
const (
	// DefaultStreamWindow is the default per-stream receive window: 4 MiB
	// fills a loopback or LAN path, and it is also the most one stalled
	// stream can make its receiver buffer.
	DefaultStreamWindow = mux.DefaultWindow
)

// MuxConfig tunes the multiplexer (package tunnel/mux). Both sides use it;
// the zero value means the defaults documented on each field.
type MuxConfig struct {
	// StreamWindow is the per-stream receive window in bytes. If zero,
	// DefaultStreamWindow (4 MiB). Values below 256 KiB are raised to it.
	StreamWindow uint32
	// AcceptBacklog bounds streams the hub opened that the agent has not
	// yet accepted; more are refused. If zero, 256.
	AcceptBacklog int
	// StreamCloseTimeout is how long a closed stream waits for the peer's
	// close before it is reset. If zero, 2 min.
	StreamCloseTimeout time.Duration
}

func (c MuxConfig) mux(log *slog.Logger) mux.Config {
	return mux.Config{
		Window:        c.StreamWindow,
		AcceptBacklog: c.AcceptBacklog,
		CloseTimeout:  c.StreamCloseTimeout,
		Logger:        log,
	}
}

// discardLogger returns l, or a logger that drops everything if l is nil.
func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Stream is one multiplexed stream of a session: the net.Conn a hub-side
// dial through the tunnel returns. Its Buffered method tells how many
// bytes of the far end's data are already here, unread, so a proxy can
// skip a flush that more data will follow at once.
type Stream = mux.Stream
