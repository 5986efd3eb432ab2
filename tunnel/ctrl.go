package tunnel

import (
	"bytes"
	"encoding/binary"
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

	// rbuf holds received bytes of an incomplete frame for tryRecv, which
	// has set the stream to non-blocking reads. Only one goroutine reads.
	rbuf        []byte
	nonBlocking bool
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

// tryRecv returns the next complete message if one has arrived, or nil
// without waiting. It puts the stream in non-blocking mode (a read deadline
// in the past); partial frames wait in rbuf for the rest. It is not mixed
// with recv on the same stream, except that linger may read afterwards.
func (c *controlStream) tryRecv() (*message, error) {
	for {
		if len(c.rbuf) >= frameHeaderLen {
			n := int(binary.BigEndian.Uint32(c.rbuf))
			if n == 0 || n > c.limit {
				// The same checks and errors as readFrame.
				_, err := readFrame(bytes.NewReader(c.rbuf), c.limit)
				return nil, err
			}
			if len(c.rbuf) >= frameHeaderLen+n {
				m, err := decodeMessage(c.rbuf[frameHeaderLen : frameHeaderLen+n])
				c.rbuf = c.rbuf[frameHeaderLen+n:]
				if len(c.rbuf) == 0 {
					c.rbuf = nil // an idle session holds no buffer
				}
				return m, err
			}
		}
		if !c.nonBlocking {
			if err := c.st.SetReadDeadline(time.Unix(1, 0)); err != nil {
				return nil, err
			}
			c.nonBlocking = true
		}
		var b [4 << 10]byte
		n, err := c.st.Read(b[:])
		c.rbuf = append(c.rbuf, b[:n]...)
		switch {
		case n > 0:
		case isTimeout(err):
			return nil, nil
		case err != nil:
			return nil, err
		}
	}
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
