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
//	/watch?ms=D       one line "UNIXNANO\n" every 10 ms for D ms, flushed
//	                  (like a Kubernetes watch)
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
	mux.HandleFunc("GET /watch", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "application/json")
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		end := time.After(time.Duration(ms) * time.Millisecond)
		buf := make([]byte, 0, 32)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-end:
				return
			case <-t.C:
				buf = strconv.AppendInt(buf[:0], time.Now().UnixNano(), 10)
				buf = append(buf, '\n')
				if _, err := w.Write(buf); err != nil {
					return
				}
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}
	})
	return mux
}
