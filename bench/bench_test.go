package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/install"
)

func TestTokenFromInstallYAML(t *testing.T) {
	tok, err := install.NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	y, err := install.Render(install.Options{ClusterID: "c1", HubURL: "https://hub.example", Token: tok, AgentVersion: "v0.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tokenFromInstallYAML(y)
	if err != nil || got != tok {
		t.Fatalf("tokenFromInstallYAML = %q, %v; want %q", got, err, tok)
	}
	if _, err := tokenFromInstallYAML([]byte("kind: Namespace\n")); err == nil {
		t.Fatal("no error for YAML without a Secret")
	}
}

func TestPercentileAndCurve(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if m := median(xs); m != 3 {
		t.Errorf("median = %v, want 3", m)
	}
	if p := percentile(xs, 0.99); p != 4 {
		t.Errorf("p99 of 5 samples = %v, want 4 (nearest rank below)", p)
	}
	if xs[0] != 5 {
		t.Error("percentile sorted its input")
	}
	if c := curve([]float64{10, 60, 70, 140}); c != "50:1 100:3 150:4" {
		t.Errorf("curve = %q", c)
	}
}

func TestParseStamp(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1700000000123456789\n", 1700000000123456789, true},
		{"0\n", 0, true},
		{"12", 0, false},
		{"\n", 0, false},
		{"12a\n", 0, false},
	} {
		got, ok := parseStamp([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("parseStamp(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// TestWatchPhase checks that /watch writes each line after its own instant
// phase µs past a multiple of watchPeriod, one line per instant at most, and
// ends at until.
func TestWatchPhase(t *testing.T) {
	srv := httptest.NewServer(Backend())
	defer srv.Close()
	const phaseUS = 3700
	period, phase := int64(watchPeriod), int64(phaseUS*time.Microsecond)
	until := time.Now().Add(8 * watchPeriod).UnixNano()
	resp, err := http.Get(fmt.Sprintf("%s/watch?until=%d&phase=%d", srv.URL, until, phaseUS))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var slots []int64
	for {
		b, err := br.ReadSlice('\n')
		if err == io.EOF && len(b) == 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ts, ok := parseStamp(b)
		if !ok {
			t.Fatalf("bad line %q", b)
		}
		slot := (ts - phase) / period // the last instant at or before ts
		if len(slots) > 0 && slot <= slots[len(slots)-1] {
			t.Errorf("line at %d: two lines for one instant (slots %v)", ts, append(slots, slot))
		}
		slots = append(slots, slot)
	}
	if len(slots) == 0 || len(slots) > 8 {
		t.Errorf("%d lines in 8 periods", len(slots))
	}
}

// TestWatch runs the watch figure against the backend directly.
func TestWatch(t *testing.T) {
	srv := httptest.NewServer(Backend())
	defer srv.Close()
	tg := &target{name: Direct, base: srv.URL, header: http.Header{}}
	tg.client, tg.tr = newClient()
	defer tg.tr.CloseIdleConnections()
	p50, p99, err := watch(context.Background(), tg, 10, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if p50 <= 0 || p99 < p50 {
		t.Errorf("p50 %v µs, p99 %v µs", p50, p99)
	}
}

// TestWriteFloors checks the floors printed under the targets: two hops of
// direct's bulk CPU, and direct plus two of revproxy's added watch delay.
func TestWriteFloors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		medians map[string]map[string]float64
		want    []string // substrings of the output, in order
		none    bool     // nothing printed
	}{
		{
			name: "all figures",
			medians: map[string]map[string]float64{
				Direct:       {mBulkCPU: 0.6, mWatch50: 100},
				Revproxy:     {mBulkCPU: 0.7, mWatch50: 160},
				Eco:          {mBulkCPU: 2.4, mWatch50: 300},
				Remotedialer: {mWatch50: 400},
			},
			want: []string{
				"one loopback hop costs 0.60 CPU-s/GiB", "revproxy, a hop's worth, 0.70",
				"two hops' worth: ≈ 1.20 CPU-s/GiB", "eco: 2.40, 2.00× that floor; the target 1.5 is 1.25× it",
				"one proxy process adds 60.0 µs", "≈ 220 µs (eco: 300)", "0.5 × remotedialer, is 200 µs",
			},
		},
		{
			name:    "direct only",
			medians: map[string]map[string]float64{Direct: {mBulkCPU: 0.5}},
			want:    []string{"one loopback hop costs 0.50 CPU-s/GiB", "≈ 1.00 CPU-s/GiB before"},
		},
		{
			name:    "no direct",
			medians: map[string]map[string]float64{Eco: {mBulkCPU: 2, mWatch50: 300}},
			none:    true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			(&Results{Medians: tc.medians}).writeFloors(&b)
			out := b.String()
			if tc.none {
				if out != "" {
					t.Fatalf("printed %q, want nothing", out)
				}
				return
			}
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
