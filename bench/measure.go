package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// sample is one measured figure of one target in one round.
type sample struct {
	Target string  `json:"target"`
	Metric string  `json:"metric"`
	Round  int     `json:"round"`
	Value  float64 `json:"value"`
}

// Metric names (units in the name).
const (
	mRPS1      = "small GET c=1 req/s"
	mP50c1     = "small GET c=1 p50 µs"
	mP99c1     = "small GET c=1 p99 µs"
	mRPS64     = "small GET c=64 req/s"
	mP50c64    = "small GET c=64 p50 µs"
	mP99c64    = "small GET c=64 p99 µs"
	mCPUReq    = "tunnel CPU µs/req (c=64)"
	mBulk      = "1×bulk MiB/s"
	mBulkCPU   = "1×bulk CPU-s/GiB"
	mPar       = "8×64MiB MiB/s"
	mParCPU    = "8×64MiB CPU-s/GiB"
	mWatch50   = "watch delay p50 µs"
	mWatch99   = "watch delay p99 µs"
	mHoLRatio  = "HoL: fast stream with stalled / alone"
	mHoLStall  = "HoL: fast stream MiB/s beside a stalled one"
	mHoLAlone  = "HoL: fast stream MiB/s alone"
	mIdleRSS   = "idle RSS KiB/tunnel"
	mIdleHeap  = "idle heap+stack KiB/tunnel"
	mIdleG     = "idle goroutines/tunnel"
	mBringUp   = "bring-up ms"
	mReconnect = "reconnect after hub restart ms"
)

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func median(xs []float64) float64 { return percentile(xs, 0.5) }

// smallGETs runs conc closed-loop clients of /small for d and returns
// req/s, p50 and p99 latency (µs) and the tunnel CPU µs per request.
func smallGETs(ctx context.Context, t *target, conc int, d time.Duration) (rps, p50, p99, cpuPerReq float64, err error) {
	// Warm up the connection pools.
	if err := warm(ctx, t, conc); err != nil {
		return 0, 0, 0, 0, err
	}
	var mu sync.Mutex
	var lat []float64
	var firstErr error
	cpu0 := t.cpu()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]float64, 0, 4096)
			buf := make([]byte, 4096)
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := get(t, ctx, "/small", buf); err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				local = append(local, float64(time.Since(t0).Microseconds()))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := t.cpu() - cpu0
	if firstErr != nil {
		return 0, 0, 0, 0, firstErr
	}
	n := float64(len(lat))
	return n / elapsed.Seconds(), percentile(lat, 0.5), percentile(lat, 0.99),
		float64(cpu.Microseconds()) / n, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func warm(ctx context.Context, t *target, conc int) error {
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for range 5 {
				if err := get(t, ctx, "/small", buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func get(t *target, ctx context.Context, path string, buf []byte) error {
	resp, err := t.client.Do(t.request(ctx, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: GET %s: %s: %s", t.name, path, resp.Status, b)
	}
	for {
		_, err := resp.Body.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// download fetches /download?bytes=n and returns how long the body took.
func download(ctx context.Context, t *target, n int64) (time.Duration, error) {
	start := time.Now()
	resp, err := t.client.Do(t.request(ctx, "/download?bytes="+strconv.FormatInt(n, 10)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: download: %s", t.name, resp.Status)
	}
	buf := make([]byte, 256<<10)
	got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, fmt.Errorf("%s: download: got %d of %d bytes", t.name, got, n)
	}
	return time.Since(start), nil
}

// bulk runs par parallel downloads of n bytes each and returns the
// aggregate MiB/s and the tunnel's CPU seconds per GiB moved.
func bulk(ctx context.Context, t *target, par int, n int64) (mibps, cpuPerGiB float64, err error) {
	cpu0 := t.cpu()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := download(ctx, t, n); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	el := time.Since(start)
	cpu := t.cpu() - cpu0
	total := float64(par) * float64(n)
	return total / (1 << 20) / el.Seconds(), cpu.Seconds() / (total / (1 << 30)), nil
}

// watch opens streams /watch streams for d and returns the p50 and p99
// delay (µs) between the backend writing a line and the client reading it.
func watch(ctx context.Context, t *target, streams int, d time.Duration) (p50, p99 float64, err error) {
	var mu sync.Mutex
	var delays []float64
	var firstErr error
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := t.client.Do(t.request(ctx, "/watch?ms="+strconv.Itoa(int(d.Milliseconds()))))
			if err == nil && resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				err = fmt.Errorf("%s: watch: %s", t.name, resp.Status)
			}
			if err != nil {
				mu.Lock()
				firstErr = cmpOr(firstErr, err)
				mu.Unlock()
				return
			}
			defer resp.Body.Close()
			local := make([]float64, 0, 256)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				now := time.Now().UnixNano()
				ts, err := strconv.ParseInt(sc.Text(), 10, 64)
				if err != nil {
					continue
				}
				local = append(local, float64(now-ts)/1e3)
			}
			mu.Lock()
			delays = append(delays, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if len(delays) == 0 {
		return 0, 0, fmt.Errorf("%s: watch: no lines", t.name)
	}
	return percentile(delays, 0.5), percentile(delays, 0.99), nil
}

// headOfLine measures a fast download of n bytes alone and then beside a
// stream on the same tunnel whose body is never read. It returns both
// rates in MiB/s.
func headOfLine(ctx context.Context, t *target, n int64) (alone, stalled float64, err error) {
	d, err := download(ctx, t, n)
	if err != nil {
		return 0, 0, err
	}
	alone = float64(n) / (1 << 20) / d.Seconds()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := t.client.Do(t.request(sctx, "/download?bytes="+strconv.FormatInt(8<<30, 10)))
	if err != nil {
		return 0, 0, err
	}
	// Let the stalled stream fill every buffer on its way.
	time.Sleep(300 * time.Millisecond)
	d, err = download(ctx, t, n)
	cancel()
	resp.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	stalled = float64(n) / (1 << 20) / d.Seconds()
	// The stalled stream's connection is broken now; drop pooled ones.
	t.tr.CloseIdleConnections()
	return alone, stalled, nil
}
