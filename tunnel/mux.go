package tunnel

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
)

// Multiplexer defaults (see docs/decisions/0002-tunnel-multiplexer.md for the
// measurements behind them).
const (
	// DefaultStreamWindow is the default per-stream receive window. yamux's
	// own default, 256 KiB, caps one stream at window/RTT; 4 MiB fills a
	// loopback or LAN path. It is also the most one stalled stream can make
	// its receiver buffer.
	DefaultStreamWindow = 4 << 20
	// minStreamWindow is yamux's fixed initial window.
	minStreamWindow = 256 << 10
)

// MuxConfig tunes the yamux session. Both sides use it; the zero value means
// the defaults documented on each field.
type MuxConfig struct {
	// StreamWindow is the per-stream receive window in bytes. If zero,
	// DefaultStreamWindow (4 MiB). Values below 256 KiB are raised to it.
	StreamWindow uint32
	// AcceptBacklog bounds streams opened but not yet accepted, and streams
	// the opener has in flight before the peer acknowledges them. If zero,
	// 256.
	AcceptBacklog int
	// WriteTimeout bounds how long a write may wait for the session's send
	// loop before failing (yamux ConnectionWriteTimeout). If zero, 10 s.
	WriteTimeout time.Duration
	// StreamOpenTimeout closes the whole session if the peer does not
	// acknowledge a new stream in time, a sign the peer is stuck. If zero,
	// 30 s; negative disables it.
	StreamOpenTimeout time.Duration
	// StreamCloseTimeout is how long a half-closed stream waits for the
	// peer's close before it is reset. If zero, 2 min.
	StreamCloseTimeout time.Duration
}

func (c MuxConfig) yamux(log *slog.Logger) *yamux.Config {
	y := yamux.DefaultConfig()
	y.LogOutput = nil
	y.Logger = yamuxLogger{log}
	// Application heartbeats on the control stream replace yamux pings.
	y.EnableKeepAlive = false
	y.MaxStreamWindowSize = DefaultStreamWindow
	if c.StreamWindow != 0 {
		y.MaxStreamWindowSize = max(c.StreamWindow, minStreamWindow)
	}
	if c.AcceptBacklog > 0 {
		y.AcceptBacklog = c.AcceptBacklog
	}
	y.ConnectionWriteTimeout = 10 * time.Second
	if c.WriteTimeout > 0 {
		y.ConnectionWriteTimeout = c.WriteTimeout
	}
	y.StreamOpenTimeout = 30 * time.Second
	switch {
	case c.StreamOpenTimeout > 0:
		y.StreamOpenTimeout = c.StreamOpenTimeout
	case c.StreamOpenTimeout < 0:
		y.StreamOpenTimeout = 0
	}
	y.StreamCloseTimeout = 2 * time.Minute
	if c.StreamCloseTimeout > 0 {
		y.StreamCloseTimeout = c.StreamCloseTimeout
	}
	return y
}

// yamuxLogger routes yamux's printf logging to slog: "[ERR]" and "[WARN]"
// lines become warnings, the rest debug.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any) { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.emit(fmt.Sprintf(format, v...))
}
func (l yamuxLogger) Println(v ...any) { l.emit(fmt.Sprintln(v...)) }

func (l yamuxLogger) emit(s string) {
	s = strings.TrimSpace(s)
	// Frames for streams already reset are routine after a close.
	routine := strings.Contains(s, "missing stream") || strings.Contains(s, "Discarding data")
	if !routine && (strings.HasPrefix(s, "[ERR]") || strings.HasPrefix(s, "[WARN]")) {
		l.log.Warn(s)
		return
	}
	l.log.Debug(s)
}

// discardLogger returns l, or a logger that drops everything if l is nil.
func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
