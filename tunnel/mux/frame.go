package mux

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Frame types (spec.md, section "Multiplexer").
const (
	typeData   byte = 0
	typeWindow byte = 1
	typeReset  byte = 2
)

// Data frame flags.
const (
	flagSYN byte = 1 << 0 // opens the stream
	flagFIN byte = 1 << 1 // the sender will send no more data
)

// Reset codes carried in a reset frame's value.
const (
	codeClosed   uint32 = 0 // closed by the application
	codeRefused  uint32 = 1 // the acceptor's backlog was full
	codeProtocol uint32 = 2 // the stream broke the protocol
)

const (
	// HeaderLen is the size of a frame header.
	HeaderLen = 12
	// InitialWindow is every stream's receive window when it opens, in
	// each direction, before any window frame.
	InitialWindow = 256 << 10
	// MaxFrame is the largest data payload a receiver accepts.
	MaxFrame = 256 << 10
	// maxSendFrame is the largest payload this implementation sends in one
	// frame: large enough to make headers negligible, small enough that
	// streams interleave finely on a shared connection. Four frames with
	// their headers fit a 256 KiB transport message.
	maxSendFrame = 64<<10 - 16
	// maxSendBatch is the most payload one Write queues at once, as
	// consecutive frames written together.
	maxSendBatch = 4 * maxSendFrame
)

// header is a decoded frame header.
type header struct {
	typ   byte
	flags byte
	id    uint32
	val   uint32 // data: payload length; window: increment; reset: code
}

func (h header) String() string {
	return fmt.Sprintf("type=%d flags=%#x stream=%d value=%d", h.typ, h.flags, h.id, h.val)
}

func appendHeader(b []byte, h header) []byte {
	b = append(b, h.typ, h.flags, 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.id)
	return binary.BigEndian.AppendUint32(b, h.val)
}

func parseHeader(b []byte) (header, error) {
	h := header{typ: b[0], flags: b[1], id: binary.BigEndian.Uint32(b[4:8]), val: binary.BigEndian.Uint32(b[8:12])}
	switch {
	case b[2] != 0 || b[3] != 0:
		return h, fmt.Errorf("%w: reserved header bytes set (%s)", ErrProtocol, h)
	case h.id == 0:
		return h, fmt.Errorf("%w: stream ID 0 (%s)", ErrProtocol, h)
	case h.typ > typeReset:
		return h, fmt.Errorf("%w: unknown frame type (%s)", ErrProtocol, h)
	case h.typ != typeData && h.flags != 0:
		return h, fmt.Errorf("%w: flags on a non-data frame (%s)", ErrProtocol, h)
	case h.typ == typeData && h.flags&^(flagSYN|flagFIN) != 0:
		return h, fmt.Errorf("%w: unknown flags (%s)", ErrProtocol, h)
	case h.typ == typeData && h.val > MaxFrame:
		return h, fmt.Errorf("%w: data frame of %d bytes, limit %d", ErrProtocol, h.val, MaxFrame)
	case h.typ == typeWindow && (h.val == 0 || h.val > 1<<30):
		return h, fmt.Errorf("%w: window increment %d", ErrProtocol, h.val)
	}
	return h, nil
}

// Receive buffers come from size-classed pools, so a stream holds memory
// only for data it has received and not yet read, and an idle session none.
var bufClasses = [...]int{512, 4 << 10, 16 << 10, 64 << 10, MaxFrame}

var bufPools [len(bufClasses)]sync.Pool

// getBuf returns a pooled buffer of length n (n ≤ MaxFrame).
func getBuf(n int) *[]byte {
	for i, c := range bufClasses {
		if n <= c {
			if p, ok := bufPools[i].Get().(*[]byte); ok {
				*p = (*p)[:n]
				return p
			}
			b := make([]byte, n, c)
			return &b
		}
	}
	panic("mux: buffer larger than MaxFrame")
}

func putBuf(p *[]byte) {
	c := cap(*p)
	for i, k := range bufClasses {
		if c == k {
			bufPools[i].Put(p)
			return
		}
	}
}

// Write buffers are pooled too: a session holds them only while writing.
var writeBufPool sync.Pool

func getWriteBuf() []byte {
	if p, ok := writeBufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 64<<10)
}

func putWriteBuf(b []byte) {
	if cap(b) < 4<<10 || cap(b) > 2*maxPending {
		return
	}
	b = b[:0]
	writeBufPool.Put(&b)
}
