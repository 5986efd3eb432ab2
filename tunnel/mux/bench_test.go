package mux

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the multiplexer alone over loopback TCP (no WebSocket),
// both ends in this process, so CPU figures cover both. The session reads
// its connection unbuffered (a header, then a payload); the tunnel gives it
// a WebSocket connection that buffers while data streams in
// (tunnel/reader.go), so these bulk figures cost more syscalls than the
// tunnel's.
//
//	go test ./tunnel/mux/ -run '^$' -bench . -benchtime 2s

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBulk moves one stream of data server → client in 32 KiB writes
// (as the agent copies API server responses) and reads it 1 MiB per op.
func BenchmarkBulk(b *testing.B) {
	c, s := pair(b, Config{}, Config{})
	st, err := c.Open()
	if err != nil {
		b.Fatal(err)
	}
	peer := accept(b, s)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := peer.Write(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if _, err := io.ReadFull(st, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	gib := float64(b.N) * float64(len(buf)) / (1 << 30)
	b.ReportMetric((cpuTime()-cpu0).Seconds()/gib, "cpu-s/GiB")
	st.Close()
}

// BenchmarkRoundTrip sends 200 bytes on a new stream and reads a 1 KiB
// answer, from 64 goroutines at once: the shape of small API requests.
func BenchmarkRoundTrip(b *testing.B) {
	c, s := pair(b, Config{}, Config{})
	go func() {
		for {
			st, err := s.Accept(b.Context())
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				req := make([]byte, 200)
				if _, err := io.ReadFull(st, req); err != nil {
					return
				}
				st.Write(make([]byte, 1024))
				st.CloseWrite()
			}()
		}
	}()
	b.SetParallelism(32)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := make([]byte, 200), make([]byte, 1024)
		for pb.Next() {
			st, err := c.Open()
			if err != nil {
				b.Error(err)
				return
			}
			st.Write(req)
			if _, err := io.ReadFull(st, resp); err != nil {
				b.Error(err)
			}
			st.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
