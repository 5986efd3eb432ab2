package tunnel

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// wsFrame builds one RFC 6455 frame header plus payload.
func wsFrame(r *rand.Rand, n int, masked bool) []byte {
	b := []byte{0x82} // FIN, binary
	var m byte
	if masked {
		m = 0x80
	}
	switch {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b = append(b, 1, 2, 3, 4)
	}
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.IntN(256))
	}
	return append(b, p...)
}

type recordingWriter struct{ writes [][]byte }

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestFrameWriter splits a stream of frames into arbitrary writes and checks
// that the bytes pass unchanged, that nothing is held back at a frame
// boundary, and that a frame that fits the buffer goes out in one write.
func TestFrameWriter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, masked := range []bool{false, true} {
		for round := range 200 {
			var frames [][]byte
			for range 1 + r.IntN(5) {
				sizes := []int{0, 1, 125, 126, 127, 4000, 65535, 65536, 70000, 200000}
				frames = append(frames, wsFrame(r, sizes[r.IntN(len(sizes))], masked))
			}
			var rec recordingWriter
			fw := &frameWriter{w: &rec}
			var want []byte
			for _, f := range frames {
				want = append(want, f...)
				// Write the frame in random pieces, as a bufio.Writer would.
				for p := f; len(p) > 0; {
					k := 1 + r.IntN(min(len(p), 9000))
					if _, err := fw.Write(p[:k]); err != nil {
						t.Fatal(err)
					}
					p = p[k:]
				}
				if fw.buf != nil || fw.hn != 0 || fw.inPayload {
					t.Fatalf("round %d: bytes held back after a complete frame", round)
				}
				if len(f) <= frameBufSize {
					if last := rec.writes[len(rec.writes)-1]; !bytes.Equal(last, f) {
						t.Fatalf("round %d: frame of %d bytes not written in one piece", round, len(f))
					}
				}
			}
			if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, want) {
				t.Fatalf("round %d: bytes changed", round)
			}
		}
	}
}
