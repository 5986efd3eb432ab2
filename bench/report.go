package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

func splitLines(s string) []string { return strings.Split(s, "\n") }

func cutField(line, name string) (string, bool) {
	k, v, ok := strings.Cut(line, ":")
	if !ok || strings.TrimSpace(k) != name {
		return "", false
	}
	return strings.TrimSpace(v), true
}

// tableMetrics are the rows of the main table, in order.
var tableMetrics = []string{
	mRPS1, mP50c1, mP99c1, mRPS64, mP50c64, mP99c64, mCPUReq,
	mBulk, mBulkCPU, mPar, mParCPU, mWatch50, mWatch99,
	mHoLAlone, mHoLStall, mHoLRatio, mWatchMem, mWatchG,
}

func fmtVal(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// WriteMarkdown prints the results as markdown tables.
func (r *Results) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Machine: %d CPUs, %s, %s, %s. Run took %s, %d round(s); medians over rounds.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.OS, r.Duration, r.Options.Rounds)
	if len(r.Medians) > 0 {
		targets := r.Options.Targets
		fmt.Fprintf(w, "| figure | %s |\n", strings.Join(targets, " | "))
		fmt.Fprintf(w, "| --- |%s\n", strings.Repeat(" ---: |", len(targets)))
		direct := r.Medians[Direct]
		for _, m := range tableMetrics {
			cells := make([]string, len(targets))
			for i, t := range targets {
				v, ok := r.Medians[t][m]
				if !ok {
					cells[i] = "–"
					continue
				}
				cells[i] = fmtVal(v)
				if d, ok := direct[m]; ok && d != 0 && t != Direct && m != mHoLRatio {
					cells[i] += fmt.Sprintf(" (%.2f×)", v/d)
				}
			}
			fmt.Fprintf(w, "| %s | %s |\n", m, strings.Join(cells, " | "))
		}
		fmt.Fprintln(w, "\n(×) is the ratio to direct. CPU figures are the tunnel's own processes (hub + agent, or the proxy), not the client or backend;"+
			" direct's bulk CPU is the bench process's own, its client and backend: one loopback TCP hop with both its ends, so a CPU ratio counts hops.")
		r.writeTargets(w)
		r.writeFloors(w)
	}
	if len(r.Idle) > 0 {
		fmt.Fprintln(w, "\n| idle tunnels (hub process) | tunnels | bring-up ms | hub CPU µs/tunnel up | RSS KiB/tunnel | heap+stack KiB/tunnel | goroutines/tunnel |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.Idle {
			hubCPU := "–"
			if x.HubCPUPer > 0 {
				hubCPU = fmtVal(x.HubCPUPer)
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", x.System, x.Tunnels, fmtVal(x.BringUpMS),
				hubCPU, fmtVal(x.RSSPer), fmtVal(x.HeapPer), fmtVal(x.GoroutinesP))
		}
	}
	if len(r.Reconnect) > 0 {
		fmt.Fprintln(w, "\n| hub killed and restarted | agents | hub down ms | back after restart p10 / p50 / p90 / max ms | after kill p50 ms |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
		for _, g := range r.reconnectGroups() {
			var fromR, fromK, down []float64
			for _, x := range g {
				fromR = append(fromR, x.FromRestartMS...)
				fromK = append(fromK, x.FromKillMS...)
				down = append(down, x.HubDownMS)
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s / %s / %s / %s | %s |\n", g[0].System, g[0].Agents, fmtVal(median(down)),
				fmtVal(percentile(fromR, 0.1)), fmtVal(median(fromR)), fmtVal(percentile(fromR, 0.9)),
				fmtVal(slices.Max(fromR)), fmtVal(median(fromK)))
		}
		for _, g := range r.reconnectGroups() {
			if g[0].Agents > 1 {
				fmt.Fprintf(w, "\nReconnect curve, %s, %d agents (agents back, cumulative, by ms after the new hub was ready): %s\n",
					g[0].System, g[0].Agents, curve(g[0].FromRestartMS))
			}
		}
	}
	if r.Real != nil {
		r.Real.writeMarkdown(w)
	}
}

func (r *Results) reconnectGroups() [][]reconnectResult {
	var keys []string
	groups := map[string][]reconnectResult{}
	for _, x := range r.Reconnect {
		k := fmt.Sprintf("%s/%d", x.System, x.Agents)
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], x)
	}
	var out [][]reconnectResult
	for _, k := range keys {
		out = append(out, groups[k])
	}
	return out
}

// curve renders how many agents were back by each time step.
func curve(xs []float64) string {
	if len(xs) == 0 {
		return ""
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	maxV := s[len(s)-1]
	step := 50.0
	for maxV/step > 20 {
		step *= 2
	}
	var parts []string
	i := 0
	for t := step; ; t += step {
		for i < len(s) && s[i] <= t {
			i++
		}
		parts = append(parts, fmt.Sprintf("%.0f:%d", t, i))
		if i == len(s) {
			break
		}
	}
	return strings.Join(parts, " ")
}

// maxBulkCPU is issue 4's target for eco's hub and agent together, in
// CPU-s per GiB of one download.
const maxBulkCPU = 1.5

// writeFloors prints what the loopback itself costs in this run: the
// floors under the bulk CPU and watch delay targets.
//
// Bulk: direct's CPU is one TCP hop with both ends. A proxy reads one hop
// and writes the next, one hop's worth (revproxy); eco's agent reads the
// backend and writes the tunnel connection, and its hub reads that and
// writes the client: two hops' worth before any work of its own.
//
// Watch: a line through one proxy process waits for that process to wake,
// read and write (revproxy − direct); eco's path has two processes.
func (r *Results) writeFloors(w io.Writer) {
	d, rp := r.Medians[Direct], r.Medians[Revproxy]
	var lines []string
	if hop, ok := d[mBulkCPU]; ok && hop > 0 {
		s := fmt.Sprintf("- bulk CPU: one loopback hop costs %s CPU-s/GiB here (direct: client and backend)", fmtVal(hop))
		if v, ok := rp[mBulkCPU]; ok {
			s += fmt.Sprintf("; revproxy, a hop's worth, %s", fmtVal(v))
		}
		s += fmt.Sprintf("; eco's hub and agent do two hops' worth: ≈ %s CPU-s/GiB before any framing, multiplexing or HTTP", fmtVal(2*hop))
		if v, ok := r.Medians[Eco][mBulkCPU]; ok {
			s += fmt.Sprintf(" (eco: %s, %.2f× that floor; the target %g is %.2f× it)", fmtVal(v), v/(2*hop), maxBulkCPU, maxBulkCPU/(2*hop))
		}
		lines = append(lines, s+".")
	}
	dw, ok1 := d[mWatch50]
	rw, ok2 := rp[mWatch50]
	if ok1 && ok2 {
		hop := rw - dw
		s := fmt.Sprintf("- watch delay p50: one proxy process adds %s µs here (revproxy − direct); eco's path has two: ≈ %s µs", fmtVal(hop), fmtVal(dw+2*hop))
		if v, ok := r.Medians[Eco][mWatch50]; ok {
			s += fmt.Sprintf(" (eco: %s)", fmtVal(v))
		}
		if v, ok := r.Medians[Remotedialer][mWatch50]; ok {
			s += fmt.Sprintf("; the target, 0.5 × remotedialer, is %s µs", fmtVal(v/2))
		}
		lines = append(lines, s+".")
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nFloors of this run (what the loopback and process wake-ups cost before any work of a tunnel's own):")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// writeTargets checks the targets: eco against remotedialer, same
// run, same transport security.
func (r *Results) writeTargets(w io.Writer) {
	type check struct {
		name      string
		eco, peer string
		metric    string
		ok        func(e, p float64) (string, bool)
	}
	ratioAtLeast := func(k float64) func(e, p float64) (string, bool) {
		return func(e, p float64) (string, bool) { return fmt.Sprintf("%.2f× (want ≥ %.1f×)", e/p, k), e/p >= k }
	}
	ratioAtMost := func(k float64) func(e, p float64) (string, bool) {
		return func(e, p float64) (string, bool) { return fmt.Sprintf("%.2f× (want ≤ %.1f×)", e/p, k), e/p <= k }
	}
	absAtMost := func(k float64, unit string) func(e, p float64) (string, bool) {
		return func(e, p float64) (string, bool) {
			return fmt.Sprintf("%s %s (want ≤ %s)", fmtVal(e), unit, fmtVal(k)), e <= k
		}
	}
	absAtLeast := func(k float64) func(e, p float64) (string, bool) {
		return func(e, p float64) (string, bool) { return fmt.Sprintf("%.2f (want ≥ %.2f)", e, k), e >= k }
	}
	var checks []check
	for _, pair := range [][2]string{{Eco, Remotedialer}, {EcoTLS, RemotedialTLS}} {
		e, p := pair[0], pair[1]
		checks = append(checks,
			check{"bulk 1 stream MiB/s", e, p, mBulk, ratioAtLeast(4)},
			check{"bulk 8 parallel MiB/s", e, p, mPar, ratioAtLeast(3)},
			check{"bulk CPU-s/GiB (hub+agent)", e, p, mBulkCPU, absAtMost(maxBulkCPU, "s")},
			check{"small GET c=64 req/s", e, p, mRPS64, ratioAtLeast(1.2)},
			check{"watch delay p50", e, p, mWatch50, ratioAtMost(0.5)},
			check{"watch delay p99", e, p, mWatch99, absAtMost(1500, "µs")},
			check{"stalled stream: other stream keeps", e, p, mHoLRatio, absAtLeast(0.9)},
		)
	}
	fmt.Fprintln(w, "\n| target (issue 4) | eco | vs | result | met |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, c := range checks {
		ev, ok1 := r.Medians[c.eco][c.metric]
		pv, ok2 := r.Medians[c.peer][c.metric]
		if !ok1 || !ok2 || pv == 0 {
			continue
		}
		s, ok := c.ok(ev, pv)
		met := "no"
		if ok {
			met = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", c.name, c.eco, c.peer, s, met)
	}
}
