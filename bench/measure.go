package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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
	mWatchMem  = "hub heap+stack KiB per open watch"
	mWatchG    = "hub goroutines per open watch"
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

// watch opens streams /watch streams and returns the p50 and p99 delay (µs)
// between the backend writing a line and the client reading it, over the
// lines written in a window of d.
//
// The method keeps the harness out of the figure:
//   - The streams' lines are spread evenly over the 10 ms period (stream i
//     asks for phase i×10ms/streams), as from watches that are not
//     synchronised. With one phase for all, every period starts with a
//     burst of 100 lines that queue behind each other in each process on
//     the way, the client's included, and the queue, not the path, makes
//     the figure (direct p50 0.1 → 0.8 ms).
//   - Only lines written in the window count. It opens settle after the
//     last stream got its response head, and not before budget after the
//     first request (if opening takes longer, the window is shorter), and
//     closes tail before every stream ends, all at one instant (until).
//     So the first lines, which queue behind the set-up of the other
//     streams and the garbage collections it causes, and the end of 100
//     streams at once are left out.
//   - Stamps are wall-clock unix nanoseconds, the one clock two processes
//     share (Go's monotonic readings count from each process's start): the
//     backend takes its stamp just before it writes and flushes the line,
//     the client just after the read that returned it. The client reads
//     through a bufio.Reader that returns a line as soon as it has one
//     (ReadSlice) and parses it in place: nothing is allocated per line, so
//     the bench process collects no garbage during the window.
func watch(ctx context.Context, t *target, streams int, d time.Duration) (p50, p99 float64, err error) {
	const (
		budget = 500 * time.Millisecond // to open the streams
		settle = 5 * watchPeriod        // after the last stream opened
		tail   = 5 * watchPeriod        // after the window, before the end
	)
	t0 := time.Now()
	to := t0.Add(budget + d).UnixNano()
	until := to + int64(tail)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A line's stamp and its delay, both in ns.
	type line struct{ ts, delay int64 }
	lines := make([][]line, streams)
	errs := make([]error, streams)
	var opened, wg sync.WaitGroup
	opened.Add(streams)
	wg.Add(streams)
	for i := range streams {
		phase := int64(watchPeriod/time.Microsecond) * int64(i) / int64(streams)
		path := "/watch?watch=true&until=" + strconv.FormatInt(until, 10) + "&phase=" + strconv.FormatInt(phase, 10)
		go func() {
			defer wg.Done()
			resp, err := t.client.Do(t.request(ctx, path))
			opened.Done()
			if err == nil && resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				err = fmt.Errorf("%s: watch: %s", t.name, resp.Status)
			}
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			defer resp.Body.Close()
			local := make([]line, 0, (until-t0.UnixNano())/int64(watchPeriod)+2)
			br := bufio.NewReaderSize(resp.Body, 4096)
			for {
				b, err := br.ReadSlice('\n')
				now := time.Now().UnixNano()
				if err == io.EOF && len(b) == 0 {
					break
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: watch: %w", t.name, err)
					cancel()
					break
				}
				ts, ok := parseStamp(b)
				if !ok {
					errs[i] = fmt.Errorf("%s: watch: bad line %q", t.name, b)
					cancel()
					break
				}
				local = append(local, line{ts, now - ts})
			}
			lines[i] = local
		}()
	}
	opened.Wait()
	opening := time.Since(t0)
	from := max(t0.Add(budget).UnixNano(), time.Now().Add(settle).UnixNano())
	wg.Wait()
	if err := firstCause(errs); err != nil {
		return 0, 0, err
	}
	var delays []float64
	for _, ls := range lines {
		for _, l := range ls {
			if l.ts >= from && l.ts < to {
				delays = append(delays, float64(l.delay)/1e3)
			}
		}
	}
	if len(delays) == 0 {
		return 0, 0, fmt.Errorf("%s: watch: no lines in the window (the streams took %v to open)", t.name, opening)
	}
	return percentile(delays, 0.5), percentile(delays, 0.99), nil
}

// firstCause returns the first error that is not the cancellation the
// first one caused, or the first error.
func firstCause(errs []error) error {
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		first = cmpOr(first, err)
	}
	return first
}

// parseStamp parses a /watch line, decimal digits and '\n', without
// allocating.
func parseStamp(b []byte) (int64, bool) {
	if len(b) < 2 || b[len(b)-1] != '\n' {
		return 0, false
	}
	var v int64
	for _, c := range b[:len(b)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
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

// watchMemory returns what the hub process holds per open quiet watch (a
// line a second, as most Kubernetes watches are quiet most of the time):
// Go heap and stacks after a collection, and goroutines. A hub serving
// Argo CD holds a watch per resource type per cluster, thousands at once,
// so this is its memory per watch. It is the slope between two levels:
// first warmWatches are opened, which also take up the connections and
// tunnel streams earlier figures left idle in the pools, then n more;
// what the n added, divided by n, is the figure.
func watchMemory(ctx context.Context, t *target, n int) (kib, goroutines float64, split string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: the watches end first
	if err := openWatches(ctx, t, &wg, 0, warmWatches); err != nil {
		return 0, 0, "", err
	}
	before, err := t.hubStats(ctx, true)
	if err != nil {
		return 0, 0, "", err
	}
	if err := openWatches(ctx, t, &wg, warmWatches, n); err != nil {
		return 0, 0, "", err
	}
	after, err := t.hubStats(ctx, true)
	if err != nil {
		return 0, 0, "", err
	}
	held := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
	split = fmt.Sprintf("%d watches: heap %.1f KiB, stacks %.1f KiB each", n,
		(float64(after.HeapInuse)-float64(before.HeapInuse))/1024/float64(n), (float64(after.StackInuse)-float64(before.StackInuse))/1024/float64(n))
	return held / 1024 / float64(n), float64(after.Goroutines-before.Goroutines) / float64(n), split, nil
}

// warmWatches is how many watches watchMemory opens before it measures:
// more than the hub's proxy keeps idle streams per cluster (256).
const warmWatches = 300

// watchOpenAttempts bounds how often openWatches tries to open one watch.
const watchOpenAttempts = 3

// openWatches opens n quiet watches, numbered from first (their phases
// spread them over the second), and returns once every one has delivered
// its first line. They stay open, read by goroutines wg counts, until ctx
// ends.
func openWatches(ctx context.Context, t *target, wg *sync.WaitGroup, first, n int) error {
	errs := make([]error, n)
	var got sync.WaitGroup
	got.Add(n)
	for i := range n {
		path := "/watch?watch=true&every=1000&ms=600000&phase=" + strconv.Itoa((first+i)%1000*1000)
		wg.Go(func() {
			delivered := false
			defer func() {
				if !delivered {
					got.Done()
				}
			}()
			var (
				resp *http.Response
				err  error
			)
			// A burst of 1,000 opens may be turned away; a client
			// (Argo CD, client-go's reflector) tries again, and so
			// does this, the same for every target.
			for attempt := 0; attempt < watchOpenAttempts; attempt++ {
				if attempt > 0 {
					time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
				}
				resp, err = t.client.Do(t.request(ctx, path))
				if err == nil && resp.StatusCode != http.StatusOK {
					msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
					resp.Body.Close()
					err = fmt.Errorf("%s: watch: %s: %s", t.name, resp.Status, bytes.TrimSpace(msg))
				}
				if err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 64)
			if _, err := br.ReadSlice('\n'); err != nil {
				errs[i] = fmt.Errorf("%s: watch: %w", t.name, err)
				return
			}
			delivered = true
			got.Done()
			io.Copy(io.Discard, br) // until ctx ends
		})
	}
	got.Wait()
	return firstCause(errs)
}
