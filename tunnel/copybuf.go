package tunnel

import "sync"

// CopyBufferSize is the size of the buffers CopyBuffers hands out.
const CopyBufferSize = 256 << 10

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, CopyBufferSize)
	return &b
}}

// CopyBuffers is a pool of 256 KiB copy buffers for proxies that move
// responses between a tunnel stream and a TCP connection; it satisfies
// httputil.BufferPool. httputil.ReverseProxy otherwise copies through
// 32 KiB buffers, which for a bulk response costs eight times the reads,
// writes and tunnel frames per byte (see docs/benchmarks.md).
type CopyBuffers struct{}

// Get returns a buffer of CopyBufferSize bytes.
func (CopyBuffers) Get() []byte { return *copyBufPool.Get().(*[]byte) }

// Put returns b to the pool.
func (CopyBuffers) Put(b []byte) {
	if cap(b) == CopyBufferSize {
		b = b[:CopyBufferSize]
		copyBufPool.Put(&b)
	}
}
