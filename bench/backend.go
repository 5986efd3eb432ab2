package bench

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// smallBody is the ~1 KiB JSON document of /small.
var smallBody = func() []byte {
	type item struct {
		Name  string `json:"name"`
		Value int    `json:"value"`
	}
	doc := struct {
		Kind  string `json:"kind"`
		Items []item `json:"items"`
	}{Kind: "List"}
	for i := 0; len(doc.Items) < 64; i++ {
		doc.Items = append(doc.Items, item{Name: "object-" + strconv.Itoa(i), Value: i})
	}
	b, _ := json.Marshal(doc)
	for len(b) > 1024 {
		doc.Items = doc.Items[:len(doc.Items)-1]
		b, _ = json.Marshal(doc)
	}
	return b
}()

// bulkChunk is what /download writes repeatedly.
var bulkChunk = func() []byte {
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// Backend is the one Go backend behind every target:
//
//	/small            a ~1 KiB JSON document
//	/download?bytes=N N bytes of application/octet-stream
//	/watch?until=T&phase=P
//	/watch?ms=D       one line "UNIXNANO\n" every 10 ms, flushed (like a
//	                  Kubernetes watch), until unix time T (ns) or for D ms;
//	                  lines at the wall-clock instants P µs past each 10 ms
//	                  (see serveWatch); &every=E makes it one line every E ms
//	                  (a quiet watch)
func Backend() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(smallBody)))
		w.Write(smallBody)
	})
	mux.HandleFunc("GET /download", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bytes", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(bulkChunk)))
			if _, err := w.Write(bulkChunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("GET /watch", serveWatch)
	return mux
}

// watchPeriod is the interval between two lines of one /watch stream.
const watchPeriod = 10 * time.Millisecond

// serveWatch streams one line every watchPeriod: the wall-clock time in
// unix nanoseconds, taken just before the line is written and flushed, so
// the reader's clock minus the line is the delay from write to read.
//
// The lines are written at the wall-clock instants that are phase µs past a
// multiple of the period (phase query parameter, default 0), not a period
// after the request came in: a client that gives its streams evenly spread
// phases gets evenly spread lines, as from watches that are not
// synchronised, instead of one burst of all streams every 10 ms. Instants
// missed (the process was not scheduled for a whole period) are skipped,
// as a time.Ticker would.
//
// The stream ends at unix time until (ns) or, without until, ms
// milliseconds after the request came in.
func serveWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now().UnixNano()
	until, err := strconv.ParseInt(q.Get("until"), 10, 64)
	if err != nil {
		ms, _ := strconv.ParseInt(q.Get("ms"), 10, 64)
		until = now + ms*int64(time.Millisecond)
	}
	phaseUS, _ := strconv.ParseInt(q.Get("phase"), 10, 64)
	period := int64(watchPeriod)
	if every, err := strconv.ParseInt(q.Get("every"), 10, 64); err == nil && every > 0 {
		period = every * int64(time.Millisecond)
	}
	phase := (phaseUS*int64(time.Microsecond)%period + period) % period
	w.Header().Set("Content-Type", "application/json")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	next := now - now%period + phase
	for next <= now {
		next += period
	}
	t := time.NewTimer(time.Duration(next - now))
	defer t.Stop()
	buf := make([]byte, 0, 32)
	for next < until {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		now = time.Now().UnixNano()
		buf = strconv.AppendInt(buf[:0], now, 10)
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		for next <= now {
			next += period
		}
		t.Reset(time.Duration(next - time.Now().UnixNano()))
	}
}
