package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
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

// The 101 held back by upgradeResponse leaves exactly once and before any
// byte written on the connection, whether release or a write (a stream the
// hub opened at once) comes first, or both at the same time.
func TestHeldBackHeadLeavesFirst(t *testing.T) {
	const head, data = "HTTP/1.1 101 Switching Protocols\r\n\r\n", "mux frames"
	for _, tc := range []struct {
		name string
		run  func(u *upgradeResponse) error
	}{
		{"release, then write", func(u *upgradeResponse) error {
			if err := u.release(); err != nil {
				return err
			}
			_, err := u.conn.Write([]byte(data))
			return err
		}},
		{"write, then release", func(u *upgradeResponse) error {
			if _, err := u.conn.Write([]byte(data)); err != nil {
				return err
			}
			return u.release()
		}},
		{"both at once", func(u *upgradeResponse) error {
			errc := make(chan error, 1)
			go func() { _, err := u.conn.Write([]byte(data)); errc <- err }()
			err := u.release()
			return errors.Join(err, <-errc)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			u := &upgradeResponse{conn: &bufferedConn{Conn: server, head: []byte(head)}}
			if err := tc.run(u); err != nil {
				t.Fatal(err)
			}
			server.Close()
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(client)
			if err != nil || string(got) != head+data {
				t.Fatalf("peer read %q, %v; want %q", got, err, head+data)
			}
		})
	}
}
