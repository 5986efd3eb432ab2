package cloud_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
	"github.com/eco-project/eco/seal"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clusters imports straight into the store, as the hub does without its
// credentials and events.
type clusters struct{ s store.Store }

func (c clusters) ImportCluster(ctx context.Context, ic cloud.ImportedCluster) (store.Cluster, error) {
	return c.s.CreateCluster(ctx, store.NewCluster{Name: ic.Name, Provider: ic.Provider, Region: ic.Region, CloudRef: ic.CloudRef,
		AgentCredentialHash: []byte(strings.Repeat("h", 16) + ic.CloudRef)})
}

func (c clusters) DeleteCluster(ctx context.Context, id string) error {
	return c.s.DeleteCluster(ctx, id)
}

// syncBuffer is a log sink safe for the poller's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

type rig struct {
	t    *testing.T
	fake *awsfake.Server
	st   store.Store
	svc  *cloud.Service
	reg  *prometheus.Registry
	logs *syncBuffer
	key  []byte
}

var key1 = bytes.Repeat([]byte{1}, 32)

func newRig(t *testing.T, cfg cloud.Config) *rig {
	f := awsfake.New()
	t.Cleanup(f.Close)
	f.AddKey("AKIDECO", "s3cret-do-not-log")
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "eco.db"), store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, fake: f, st: st, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, key: key1}
	r.svc = r.service(cfg, key1)
	return r
}

func (r *rig) service(cfg cloud.Config, keys ...[]byte) *cloud.Service {
	sealer, err := seal.New(keys...)
	if err != nil {
		r.t.Fatal(err)
	}
	cfg.Store, cfg.Clusters, cfg.Sealer = r.st, clusters{r.st}, sealer
	cfg.Providers = map[store.Provider]cloud.Provider{store.ProviderEKS: aws.New(aws.Config{EKSEndpoint: r.fake.URL, STSEndpoint: r.fake.URL, MaxAttempts: 1})}
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Registerer == nil {
		cfg.Registerer = r.reg
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func() float64 { return 1 }
	}
	s, err := cloud.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func (r *rig) account(regions ...string) cloud.AccountInfo {
	a, err := r.svc.CreateAccount(r.t.Context(), cloud.NewAccount{Name: "prod-aws", Provider: store.ProviderEKS, Scopes: regions,
		Credentials: cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret-do-not-log"}})
	if err != nil {
		r.t.Fatal(err)
	}
	return a
}

func TestAccounts(t *testing.T) {
	r := newRig(t, cloud.Config{})
	ctx := t.Context()
	tests := []struct {
		name string
		na   cloud.NewAccount
		want error
	}{
		{"rejected secret", cloud.NewAccount{Name: "bad", Provider: "eks", Scopes: []string{"eu-west-1"}, Credentials: cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "wrong"}}, cloud.ErrCredentialsRejected},
		{"no secret", cloud.NewAccount{Name: "bad", Provider: "eks", Scopes: []string{"eu-west-1"}, Credentials: cloud.Credentials{AccessKeyID: "AKIDECO"}}, store.ErrInvalid},
		{"no region", cloud.NewAccount{Name: "bad", Provider: "eks", Credentials: cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret-do-not-log"}}, store.ErrInvalid},
		{"a provider not enabled", cloud.NewAccount{Name: "bad", Provider: "gke", Scopes: []string{"p"}, Credentials: cloud.Credentials{ServiceAccountKey: "{}"}}, store.ErrInvalid},
		{"generic", cloud.NewAccount{Name: "bad", Provider: "generic", Scopes: []string{"p"}}, store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := r.svc.CreateAccount(ctx, tt.na); !errors.Is(err, tt.want) || !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("CreateAccount = %v, want %v (and ErrInvalid)", err, tt.want)
			}
		})
	}
	a := r.account("eu-west-1", "us-east-1")
	if as, _ := r.svc.Accounts(ctx); len(as) != 1 || as[0].ID != a.ID {
		t.Fatalf("Accounts = %+v", as)
	}
	sa, err := r.st.GetCloudAccount(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sa.Sealed, []byte("s3cret")) || bytes.Contains(sa.Sealed, []byte("AKIDECO")) {
		t.Errorf("the stored account holds its credentials in clear")
	}
	if strings.Contains(r.logs.String(), "s3cret") || strings.Contains(r.logs.String(), "wrong") {
		t.Errorf("a secret reached the logs:\n%s", r.logs)
	}

	// Rotation of the hub's key: a hub with a new key and the old one as
	// previous reseals; then the old key is not needed.
	key2 := bytes.Repeat([]byte{2}, 32)
	if _, err := r.service(cloud.Config{Registerer: prometheus.NewRegistry()}, key2).Discover(ctx, a.ID, nil); !errors.Is(err, cloud.ErrUnseal) {
		t.Errorf("a hub without the sealing key: %v, want ErrUnseal", err)
	}
	rotating := r.service(cloud.Config{Registerer: prometheus.NewRegistry()}, key2, key1)
	if n, err := rotating.Reseal(ctx); n != 1 || err != nil {
		t.Fatalf("Reseal = %d, %v; want 1", n, err)
	}
	if n, err := rotating.Reseal(ctx); n != 0 || err != nil {
		t.Errorf("Reseal again = %d, %v; want 0", n, err)
	}
	if _, err := r.service(cloud.Config{Registerer: prometheus.NewRegistry()}, key2).Discover(ctx, a.ID, nil); err != nil {
		t.Errorf("after resealing, the new key alone: %v", err)
	}
	// A blob moved to another account does not open.
	b, err := r.st.CreateCloudAccount(ctx, store.NewCloudAccount{Name: "moved", Provider: store.ProviderEKS, Scopes: []string{"eu-west-1"}, Sealed: sa.Sealed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Discover(ctx, b.ID, nil); !errors.Is(err, cloud.ErrUnseal) {
		t.Errorf("a sealed blob under another account's name: %v, want ErrUnseal", err)
	}
}

func TestDiscoverAndImport(t *testing.T) {
	r := newRig(t, cloud.Config{})
	ctx := t.Context()
	r.fake.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.31"}, awsfake.Cluster{Name: "new", Status: "CREATING", Version: "1.32"})
	r.fake.SetClusters("us-east-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.30"})
	a := r.account("eu-west-1", "us-east-1")
	ds, err := r.svc.Discover(ctx, a.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || !ds[0].Importable || ds[1].Importable || ds[1].NotImportable != "still being created" || !ds[2].Importable {
		t.Fatalf("Discover = %+v", ds)
	}
	if _, err := r.svc.Discover(ctx, a.ID, []string{"ap-south-1"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a region not of the account: %v", err)
	}
	res, err := r.svc.Import(ctx, a.ID, []cloud.ImportItem{
		{Scope: "eu-west-1", Ref: ds[0].Ref}, {Scope: "us-east-1", Ref: ds[2].Ref},
		{Scope: "eu-west-1", Ref: ds[1].Ref}, {Scope: "eu-west-1", Ref: r.fake.ARN("eu-west-1", "nope")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Name != "prod" || res[1].Name != "prod-us-east-1" || res[2].Error == "" || res[3].Error == "" {
		t.Fatalf("Import = %+v", res)
	}
	c, err := r.st.GetCluster(ctx, res[1].ClusterID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provider != store.ProviderEKS || c.Region != "us-east-1" || c.CloudRef != ds[2].Ref || c.CloudHealth != "Healthy" {
		t.Errorf("imported cluster = %+v", c)
	}
	again, err := r.svc.Import(ctx, a.ID, []cloud.ImportItem{{Scope: "eu-west-1", Ref: ds[0].Ref, Name: "another-name"}})
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Conflict || !strings.Contains(again[0].Error, "already imported as cluster "+res[0].ClusterID) {
		t.Errorf("importing twice: %+v", again[0])
	}
	if ds, _ := r.svc.Discover(ctx, a.ID, []string{"eu-west-1"}); ds[0].ImportedAs != res[0].ClusterID || ds[0].Importable {
		t.Errorf("after import, Discover = %+v", ds[0])
	}
	if err := r.svc.DeleteAccount(ctx, a.ID); !errors.Is(err, store.ErrConflict) {
		t.Errorf("deleting an account in use: %v", err)
	}
}

// waitHealth waits until cluster id's cloud health is want.
func (r *rig) waitHealth(id, want string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		c, err := r.st.GetCluster(r.t.Context(), id)
		if err != nil {
			r.t.Fatal(err)
		}
		if got = c.CloudHealth; got == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.t.Fatalf("cloud health of %s is %q, want %q", id, got, want)
}

func TestPoller(t *testing.T) {
	r := newRig(t, cloud.Config{Interval: 40 * time.Millisecond, FastInterval: 10 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r.fake.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE"})
	r.fake.SetClusters("us-east-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE"})
	a := r.account("eu-west-1", "us-east-1")
	res, err := r.svc.Import(ctx, a.ID, []cloud.ImportItem{{Scope: "eu-west-1", Ref: r.fake.ARN("eu-west-1", "prod")}, {Scope: "us-east-1", Ref: r.fake.ARN("us-east-1", "prod")}})
	if err != nil || res[0].Error != "" || res[1].Error != "" {
		t.Fatalf("Import = %+v, %v", res, err)
	}
	eu, us := res[0].ClusterID, res[1].ClusterID
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.svc.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	// The same name in two regions: each its own health.
	r.fake.SetClusters("us-east-1", awsfake.Cluster{Name: "prod", Status: "UPDATING"})
	r.waitHealth(us, "Updating: UPDATING")
	r.waitHealth(eu, "Healthy")
	r.fake.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Issues: []awsfake.Issue{{Code: "IamRoleNotFound", Message: "the cluster role is gone"}}})
	r.waitHealth(eu, "Degraded: IamRoleNotFound: the cluster role is gone")
	// Deleted in the cloud.
	r.fake.SetClusters("us-east-1")
	r.waitHealth(us, "NotFound: no longer in region us-east-1")
	// Each change is in the status history (written just after the
	// health itself, so awaited).
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h, err := r.st.StatusHistory(ctx, us, 0)
		if err != nil {
			t.Fatal(err)
		}
		var notes []string
		for _, tr := range h {
			notes = append(notes, tr.Reason)
		}
		if got = strings.Join(notes, "|"); strings.Contains(got, "cloud health: NotFound") && strings.Contains(got, "cloud health: Updating") {
			break
		}
	}
	if !strings.Contains(got, "cloud health: NotFound") || !strings.Contains(got, "cloud health: Updating") {
		t.Errorf("history of %s: %s", us, got)
	}

	// Throttled: the poller backs off (the steps up to the 300 ms cap
	// and ~3 at it: about 7 calls, not the 25–100 of one per 10–40 ms).
	r.fake.Throttle(1 << 30)
	before := r.fake.Requests("eu-west-1")
	time.Sleep(time.Second)
	throttled := r.fake.Requests("eu-west-1") - before
	t.Logf("%d requests in 1 s while throttled", throttled)
	if throttled > 10 {
		t.Errorf("%d calls in 1 s while throttled; want backoff (≤ 10)", throttled)
	}
	if got := testutil.ToFloat64(counter(t, r.reg, "eco_cloud_api_calls_total", "throttled")); got < 1 {
		t.Errorf("no throttled calls counted")
	}
	r.fake.Throttle(0)

	// Credentials rejected: Unknown, not a failed cluster.
	r.fake.RemoveKey("AKIDECO")
	r.waitHealth(eu, "Unknown: credentials rejected")
}

func counter(t *testing.T, reg *prometheus.Registry, name, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(total)
	return c
}
