package tunnel

import (
	"io"
	"sync"
)

// readBufSize is the size of an adaptiveReader's buffer, used while data
// streams in.
const readBufSize = 256 << 10

var readBufPool = sync.Pool{New: func() any {
	b := make([]byte, readBufSize)
	return &b
}}

// adaptiveReader buffers reads from r only while data streams in, so that
// an idle connection holds no read buffer.
//
// The layers above it (the multiplexer's reader, the WebSocket library's
// frame reader) read in small pieces: a 12-byte header, a 2-byte frame
// header, a 4 KiB fill. Passed straight to a connection each would be a syscall (or a
// copy out of the TLS record). While the last read filled the buffer it was
// given, more data is probably waiting, so reads go through a pooled 64 KiB
// buffer; once a read comes back short the buffer is returned to the pool
// and the next read waits in the caller's own small buffer.
//
// It is used by one reading goroutine at a time.
type adaptiveReader struct {
	r    io.Reader
	buf  *[]byte // pooled, only while data streams in
	data []byte  // unread part of buf
	full bool    // the last read from r filled the buffer it was given
}

func (a *adaptiveReader) Read(p []byte) (int, error) {
	if len(a.data) > 0 {
		n := copy(p, a.data)
		a.data = a.data[n:]
		a.releaseIfDrained()
		return n, nil
	}
	if len(p) >= readBufSize/4 || !a.full {
		a.release() // do not hold it while waiting
		n, err := a.r.Read(p)
		a.full = err == nil && n == len(p)
		return n, err
	}
	if a.buf == nil {
		a.buf = readBufPool.Get().(*[]byte)
	}
	n, err := a.r.Read(*a.buf)
	a.full = err == nil && n == len(*a.buf)
	a.data = (*a.buf)[:n]
	k := copy(p, a.data)
	a.data = a.data[k:]
	a.releaseIfDrained()
	return k, err
}

func (a *adaptiveReader) releaseIfDrained() {
	if len(a.data) == 0 && !a.full {
		a.release()
	}
}

func (a *adaptiveReader) release() {
	if a.buf != nil {
		readBufPool.Put(a.buf)
		a.buf, a.data = nil, nil
	}
}
