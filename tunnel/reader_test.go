package tunnel

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// chunkReader returns the data in pieces of the given sizes, like a socket.
type chunkReader struct {
	data  []byte
	sizes []int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data))
	if len(c.sizes) > 0 {
		n = min(n, c.sizes[0])
		c.sizes = c.sizes[1:]
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestAdaptiveReaderDeliversEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	var sizes []int
	for range 2000 {
		sizes = append(sizes, 1+rng.IntN(70000))
	}
	a := &adaptiveReader{r: &chunkReader{data: data, sizes: sizes}}
	var got bytes.Buffer
	buf := make([]byte, 0, 64<<10)
	for {
		// Reads of every size the layers above use: headers, 4 KiB
		// fills, large bodies.
		n := []int{2, 12, 4096, 40000}[rng.IntN(4)]
		k, err := a.Read(buf[:n])
		got.Write(buf[:k])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("got %d bytes, want %d, or different content", got.Len(), len(data))
	}
	if err := iotest.TestReader(&adaptiveReader{r: bytes.NewReader(data)}, data); err != nil {
		t.Fatal(err)
	}
}

func TestAdaptiveReaderReleasesBufferWhenIdle(t *testing.T) {
	// The source has 100 KiB ready, then nothing (a short read).
	data := bytes.Repeat([]byte("x"), 100<<10)
	a := &adaptiveReader{r: &chunkReader{data: data, sizes: []int{4096, 64 << 10, 30 << 10}}}
	p := make([]byte, 4096)
	if _, err := a.Read(p); err != nil { // fills p: streaming
		t.Fatal(err)
	}
	if _, err := a.Read(p); err != nil { // through the buffer
		t.Fatal(err)
	}
	if a.buf == nil {
		t.Fatal("no buffer while data streams in")
	}
	for a.buf != nil {
		if _, err := a.Read(p); err != nil {
			t.Fatalf("buffer still held at %v", err)
		}
	}
	if a.full {
		t.Fatal("a short read left the reader in streaming mode")
	}
}
