package tunnel

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/eco-project/eco/tunnel/mux"
)

// controlStream frames control messages on stream 1.
type controlStream struct {
	st    *mux.Stream
	limit int

	// wmu serializes writers so frames never interleave; it guards wbuf.
	wmu  sync.Mutex
	wbuf []byte
}

func newControlStream(st *mux.Stream, limit int) *controlStream {
	if limit <= 0 {
		limit = DefaultMaxControlMessage
	}
	return &controlStream{st: st, limit: limit}
}

// send writes m as one frame. A non-zero deadline bounds the wait for flow
// control window.
func (c *controlStream) send(m *message, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := appendFrame(c.wbuf[:0], m)
	if err != nil {
		return err
	}
	c.wbuf = b[:0]
	if len(b)-frameHeaderLen > c.limit {
		return fmt.Errorf("%w: sending %s: %d bytes", ErrFrameTooLarge, m.Type, len(b))
	}
	if err := c.st.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.st.Write(b); err != nil {
		return fmt.Errorf("sending %s: %w", m.Type, err)
	}
	return nil
}

// recv reads the next message. Callers set the read deadline on c.st.
func (c *controlStream) recv() (*message, error) {
	body, err := readFrame(c.st, c.limit)
	if err != nil {
		return nil, err
	}
	return decodeMessage(body)
}

// isTimeout reports whether err is a read or write deadline expiring.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
