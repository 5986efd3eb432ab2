package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Options select what Run measures.
type Options struct {
	// Quick shortens every figure for a smoke run (< 2 minutes).
	Quick bool
	// Rounds is how many interleaved rounds run. If zero, 3 (1 if Quick).
	Rounds int
	// Targets to compare. If empty, AllTargets.
	Targets []string
	// IdleCounts are the tunnel counts of the idle-memory figure. If
	// empty, 1, 1000 and 10000 (1 and 1000 if Quick).
	IdleCounts []int
	// Figures, if not empty, limits the load figures to those named
	// (small1, small64, bulk, parallel, watch, hol).
	Figures []string
	// SkipIdle and SkipReconnect leave those sections out.
	SkipIdle, SkipReconnect bool
	// Out is where the JSON results go. If empty, none are written.
	Out string
	// Log receives progress lines. If nil, they are discarded.
	Log io.Writer
}

// Results is everything one run measured; it is written as JSON.
type Results struct {
	Started   time.Time                     `json:"started"`
	Duration  string                        `json:"duration"`
	Machine   Machine                       `json:"machine"`
	Options   Options                       `json:"options"`
	Samples   []sample                      `json:"samples"`
	Medians   map[string]map[string]float64 `json:"medians"` // target → metric → median
	Idle      []idleResult                  `json:"idle,omitempty"`
	Reconnect []reconnectResult             `json:"reconnect,omitempty"`
	Real      *RealResults                  `json:"real,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range splitLines(string(b)) {
			if v, ok := cutField(l, "model name"); ok {
				m.CPUModel = v
				break
			}
		}
	}
	return m
}

// Run starts the backend and every target on loopback, runs the rounds
// and returns the results.
func Run(ctx context.Context, o Options) (*Results, error) {
	if o.Rounds <= 0 {
		o.Rounds = 3
		if o.Quick {
			o.Rounds = 1
		}
	}
	if len(o.Targets) == 0 {
		o.Targets = AllTargets
	}
	if len(o.IdleCounts) == 0 {
		o.IdleCounts = []int{1, 1000, 10000}
		if o.Quick {
			o.IdleCounts = []int{1, 1000}
		}
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	res := &Results{Started: time.Now(), Machine: machine(), Options: o, Medians: map[string]map[string]float64{}}
	raiseFileLimit()

	dir, err := os.MkdirTemp("", "ecobench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tlsArgs, err := writeCert(dir)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	backend := &http.Server{Handler: Backend(), ErrorLog: quietLog()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); backend.Serve(ln) }()
	defer func() { backend.Close(); wg.Wait() }()
	e := env{backend: "http://" + ln.Addr().String(), tlsArgs: tlsArgs, dir: dir}

	// Sizes and durations.
	smallDur, watchDur, openWatches := 2*time.Second, 2*time.Second, 1000
	bulkSize, parSize, holSize := int64(512<<20), int64(64<<20), int64(256<<20)
	if o.Quick {
		smallDur, watchDur, openWatches = 700*time.Millisecond, time.Second, 200
		bulkSize, parSize, holSize = 128<<20, 16<<20, 64<<20
	}

	targets := map[string]*target{}
	defer func() {
		for _, t := range targets {
			t.close()
		}
	}()
	for _, name := range o.Targets {
		logf("starting %s", name)
		t, err := startTarget(ctx, name, e)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		targets[name] = t
	}
	add := func(t *target, round int, metric string, v float64) {
		res.Samples = append(res.Samples, sample{Target: t.name, Metric: metric, Round: round, Value: v})
	}
	type figure struct {
		key  string
		name string
		run  func(t *target, round int) error
	}
	figures := []figure{
		{"small1", "small GET c=1", func(t *target, r int) error {
			rps, p50, p99, _, err := smallGETs(ctx, t, 1, smallDur)
			add(t, r, mRPS1, rps)
			add(t, r, mP50c1, p50)
			add(t, r, mP99c1, p99)
			return err
		}},
		{"small64", "small GET c=64", func(t *target, r int) error {
			rps, p50, p99, cpu, err := smallGETs(ctx, t, 64, smallDur)
			add(t, r, mRPS64, rps)
			add(t, r, mP50c64, p50)
			add(t, r, mP99c64, p99)
			if len(t.procs) > 0 {
				add(t, r, mCPUReq, cpu)
			}
			return err
		}},
		{"bulk", "bulk", func(t *target, r int) error {
			v, cpu, err := bulk(ctx, t, 1, bulkSize)
			add(t, r, mBulk, v)
			if t.hasCPU() {
				add(t, r, mBulkCPU, cpu)
			}
			return err
		}},
		{"parallel", "8 parallel", func(t *target, r int) error {
			v, cpu, err := bulk(ctx, t, 8, parSize)
			add(t, r, mPar, v)
			if t.hasCPU() {
				add(t, r, mParCPU, cpu)
			}
			return err
		}},
		{"watch", "watch", func(t *target, r int) error {
			p50, p99, err := watch(ctx, t, 100, watchDur)
			add(t, r, mWatch50, p50)
			add(t, r, mWatch99, p99)
			return err
		}},
		{"watchmem", "open watches", func(t *target, r int) error {
			if t.hub == nil {
				return nil // direct: no hub
			}
			kib, g, split, err := watchMemory(ctx, t, openWatches)
			if err == nil {
				logf("round %d: %s: hub memory per open watch: %s", r+1, t.name, split)
			}
			add(t, r, mWatchMem, kib)
			add(t, r, mWatchG, g)
			return err
		}},
		{"hol", "head-of-line", func(t *target, r int) error {
			alone, stalled, err := headOfLine(ctx, t, holSize)
			add(t, r, mHoLAlone, alone)
			add(t, r, mHoLStall, stalled)
			if alone > 0 {
				add(t, r, mHoLRatio, stalled/alone)
			}
			return err
		}},
	}
	for round := range o.Rounds {
		for _, f := range figures {
			if len(o.Figures) > 0 && !slices.Contains(o.Figures, f.key) {
				continue
			}
			order := slices.Clone(o.Targets)
			// Rotate the order every round so no target always goes first.
			k := round % len(order)
			order = append(order[k:], order[:k]...)
			for _, name := range order {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				logf("round %d: %s: %s", round+1, f.name, name)
				if err := f.run(targets[name], round); err != nil {
					return nil, fmt.Errorf("round %d: %s: %s: %w", round+1, f.name, name, err)
				}
			}
		}
	}
	for _, t := range targets {
		t.close()
	}
	clear(targets)
	byKey := map[[2]string][]float64{}
	for _, s := range res.Samples {
		k := [2]string{s.Target, s.Metric}
		byKey[k] = append(byKey[k], s.Value)
	}
	for k, xs := range byKey {
		if res.Medians[k[0]] == nil {
			res.Medians[k[0]] = map[string]float64{}
		}
		res.Medians[k[0]][k[1]] = median(xs)
	}

	if !o.SkipIdle {
		for _, n := range o.IdleCounts {
			for _, sys := range idleSystems {
				if n > 1000 && sys == EcoTLS {
					continue // the TLS figure is reported at 1,000
				}
				logf("idle: %s × %d", sys, n)
				r, err := idleTunnels(ctx, e, sys, n)
				if err != nil {
					return nil, fmt.Errorf("idle %s × %d: %w", sys, n, err)
				}
				res.Idle = append(res.Idle, r)
			}
		}
	}
	if !o.SkipReconnect {
		restarts := 5
		fleet := 1000
		if o.Quick {
			restarts, fleet = 3, 200
		}
		for _, sys := range []string{Eco, Remotedialer} {
			logf("reconnect: %s, 1 agent × %d restarts", sys, restarts)
			rs, err := reconnect(ctx, e, sys, 1, restarts)
			if err != nil {
				return nil, fmt.Errorf("reconnect %s: %w", sys, err)
			}
			res.Reconnect = append(res.Reconnect, rs...)
			logf("reconnect: %s, %d agents", sys, fleet)
			rs, err = reconnect(ctx, e, sys, fleet, 1)
			if err != nil {
				return nil, fmt.Errorf("reconnect %s × %d: %w", sys, fleet, err)
			}
			res.Reconnect = append(res.Reconnect, rs...)
		}
	}
	res.Duration = time.Since(res.Started).Round(time.Second).String()
	if o.Out != "" {
		if err := res.Write(o.Out); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (r *Results) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1
// and returns the child flags that use it.
func writeCert(dir string) ([]string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ecobench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	return []string{"-tls", "-cert", certPath, "-key", keyPath, "-ca", certPath}, nil
}
