package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
)

// RealResults is the real-path table: kubectl and client-go against a
// local kube-apiserver (localcluster), direct and through hub and agent.
type RealResults struct {
	Objects int                  `json:"objects"`
	Rows    []RealRow            `json:"rows"`
	Samples map[string][]float64 `json:"samples"` // "figure/direct|eco" → samples
}

// RealRow is one figure of the real path (medians).
type RealRow struct {
	Figure  string  `json:"figure"`
	Direct  float64 `json:"direct"`
	ThruEco float64 `json:"eco"`
	Unit    string  `json:"unit"`
}

func (r *RealResults) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n| real path (local kube-apiserver v1.34, kwok) | direct | through eco (hub → wss tunnel → agent) | ratio |\n")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
	for _, x := range r.Rows {
		ratio := "–"
		if x.Direct != 0 {
			ratio = fmt.Sprintf("%.2f×", x.ThruEco/x.Direct)
		}
		fmt.Fprintf(w, "| %s (%s) | %s | %s | %s |\n", x.Figure, x.Unit, fmtVal(x.Direct), fmtVal(x.ThruEco), ratio)
	}
}

// RealOptions configure RunReal.
type RealOptions struct {
	// Quick runs fewer repetitions (the list still has 5,000 objects).
	Quick bool
	// Log receives progress lines. If nil, they are discarded.
	Log io.Writer
}

const realNamespace = "bench"

// RunReal starts a local Kubernetes (etcd, kube-apiserver, controller
// manager, scheduler, kwok), the real hub on an HTTPS loopback listener and
// the real agent (agent.Run), and measures kubectl and client-go direct
// against the API server and through hub → tunnel → agent.
func RunReal(ctx context.Context, o RealOptions) (*RealResults, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "%s real: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	reps := 5
	if o.Quick {
		reps = 2
	}
	res := &RealResults{Objects: 5000, Samples: map[string][]float64{}}

	logf("starting local cluster")
	kc, err := localcluster.Start(ctx, localcluster.Config{Full: true, Name: "ecobench"})
	if err != nil {
		return nil, err
	}
	defer kc.Stop()
	dir, err := os.MkdirTemp("", "ecobench-real-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The hub, on HTTPS.
	tlsArgs, err := writeCert(dir)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := tlsArgs[2], tlsArgs[4]
	caPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"), store.Config{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	hubURL := "https://" + ln.Addr().String()
	h, err := hub.New(hub.Config{Store: st, ExternalURL: hubURL, CAPEM: caPEM, SecretKey: secret,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := &http.Server{Handler: h, ErrorLog: quietLog(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.ServeTLS(ln, "", "") }()
	defer func() { srv.Close(); h.Close(); wg.Wait() }()
	userToken, err := h.Bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	c, err := h.ImportCluster(ctx, hub.ImportRequest{Name: "real", Provider: store.Provider("generic")})
	if err != nil {
		return nil, err
	}
	yml, err := h.InstallYAML(c.ID)
	if err != nil {
		return nil, err
	}
	agentTok, err := tokenFromInstallYAML(yml)
	if err != nil {
		return nil, err
	}
	logf("applying the install YAML")
	cmd := kc.Kubectl(ctx, "apply", "-f", "-")
	cmd.Stdin = bytes.NewReader(yml)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kubectl apply: %v\n%s", err, out)
	}
	admin, err := kubernetes.NewForConfig(fast(kc.RESTConfig()))
	if err != nil {
		return nil, err
	}
	exp := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(install.DefaultNamespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenRequest: %w", err)
	}
	tokenFile := filepath.Join(dir, "sa-token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		return nil, err
	}
	// The identity token, as the install YAML's projected volume gives it.
	tr, err = admin.CoreV1().ServiceAccounts(install.DefaultNamespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp, Audiences: []string{hubURL}}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenRequest for the identity token: %w", err)
	}
	identityFile := filepath.Join(dir, "identity-token")
	if err := os.WriteFile(identityFile, []byte(tr.Status.Token), 0o600); err != nil {
		return nil, err
	}

	// The agent.
	actx, acancel := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- agent.Run(actx, agent.Config{
			HubURL: hubURL, ClusterID: c.ID, Token: agentTok, HubCAPEM: caPEM, IdentityTokenFile: identityFile,
			Namespace: install.DefaultNamespace,
			RESTConfig: &rest.Config{Host: kc.URL, TLSClientConfig: rest.TLSClientConfig{CAData: kc.CAPEM},
				BearerTokenFile: tokenFile},
			Version: "bench", HealthAddr: "127.0.0.1:0",
			Logger: slog.New(slog.DiscardHandler),
			Proxy:  func(*http.Request) (*url.URL, error) { return nil, nil },
		})
	}()
	defer func() { acancel(); <-agentDone }()
	for deadline := time.Now().Add(60 * time.Second); !h.Connected(c.ID); {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the agent did not connect within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl, err := h.Store().GetCluster(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	kcfg, err := h.Kubeconfig(cl, "admin", userToken)
	if err != nil {
		return nil, err
	}
	ecoKubeconfig := filepath.Join(dir, "eco.kubeconfig")
	if err := os.WriteFile(ecoKubeconfig, kcfg, 0o600); err != nil {
		return nil, err
	}
	ecoREST, err := clientcmd.RESTConfigFromKubeConfig(kcfg)
	if err != nil {
		return nil, err
	}

	logf("creating %d ConfigMaps", res.Objects)
	if err := createObjects(ctx, admin, res.Objects); err != nil {
		return nil, err
	}

	kubectl := func(kubeconfig string, args ...string) (time.Duration, int, error) {
		cmd := exec.CommandContext(ctx, kc.Bin.Path(localcluster.Kubectl), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		var out bytes.Buffer
		cmd.Stdout = &out
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		if err != nil {
			return 0, 0, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return time.Since(start), out.Len(), nil
	}
	paths := map[string]string{"direct": kc.AdminKubeconfig, "eco": ecoKubeconfig}
	add := func(fig, path string, v float64) {
		res.Samples[fig+"/"+path] = append(res.Samples[fig+"/"+path], v)
	}
	for _, list := range []struct {
		fig  string
		args []string
	}{
		{"kubectl get cm (table, 5,000)", []string{"get", "configmaps", "-n", realNamespace}},
		{"kubectl get cm -o json (5,000)", []string{"get", "configmaps", "-n", realNamespace, "-o", "json"}},
	} {
		for i := range reps {
			for _, p := range []string{"direct", "eco"} {
				if i%2 == 1 { // alternate who goes first
					p = map[string]string{"direct": "eco", "eco": "direct"}[p]
				}
				logf("%s via %s", list.fig, p)
				d, _, err := kubectl(paths[p], list.args...)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p, err)
				}
				add(list.fig, p, float64(d.Milliseconds()))
			}
		}
		res.row(list.fig, "ms")
	}

	// Watch event latency: update a ConfigMap, time until the watch sees it.
	logf("watch latency")
	for _, p := range []string{"direct", "eco"} {
		cfg := fast(kc.RESTConfig())
		if p == "eco" {
			cfg = fast(ecoREST)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		lat, err := watchLatency(ctx, admin, cs, 20*reps)
		if err != nil {
			return nil, fmt.Errorf("watch via %s: %w", p, err)
		}
		res.Samples["watch event p50/"+p] = lat
		res.Samples["watch event p99/"+p] = []float64{percentile(lat, 0.99)}
	}
	res.row("watch event p50", "ms")
	res.row("watch event p99", "ms")

	// Logs: kwok serves every container's log from one file.
	logf("logs throughput")
	if err := logsSetup(ctx, kc, admin); err != nil {
		logf("skipping logs: %v", err)
	} else {
		for i := range reps {
			for _, p := range []string{"direct", "eco"} {
				if i%2 == 1 {
					p = map[string]string{"direct": "eco", "eco": "direct"}[p]
				}
				d, n, err := kubectl(paths[p], "logs", "-n", realNamespace, "logger")
				if err != nil {
					logf("logs via %s: %v", p, err)
					continue
				}
				add("kubectl logs", p, float64(n)/(1<<20)/d.Seconds())
			}
		}
		if len(res.Samples["kubectl logs/direct"]) > 0 && len(res.Samples["kubectl logs/eco"]) > 0 {
			res.row("kubectl logs", "MiB/s")
		}

		// Exec: kwok runs the command on this host (ClusterExec, see
		// localcluster) and kubectl streams its output back over the
		// exec protocol upgrade, through the agent's upgrade path.
		logf("exec throughput")
		const execBytes = 32 << 20
		for i := range reps {
			for _, p := range []string{"direct", "eco"} {
				if i%2 == 1 {
					p = map[string]string{"direct": "eco", "eco": "direct"}[p]
				}
				d, n, err := kubectl(paths[p], "exec", "-n", realNamespace, "logger", "--", "head", "-c", strconv.Itoa(execBytes), "/dev/zero")
				if err == nil && n != execBytes {
					err = fmt.Errorf("got %d bytes, want %d", n, execBytes)
				}
				if err != nil {
					logf("exec via %s: %v", p, err)
					continue
				}
				add("kubectl exec (32 MiB stdout)", p, float64(n)/(1<<20)/d.Seconds())
			}
		}
		if len(res.Samples["kubectl exec (32 MiB stdout)/direct"]) > 0 && len(res.Samples["kubectl exec (32 MiB stdout)/eco"]) > 0 {
			res.row("kubectl exec (32 MiB stdout)", "MiB/s")
		}
	}
	return res, nil
}

func (r *RealResults) row(fig, unit string) {
	r.Rows = append(r.Rows, RealRow{Figure: fig, Unit: unit,
		Direct: median(r.Samples[fig+"/direct"]), ThruEco: median(r.Samples[fig+"/eco"])})
}

// fast lifts client-go's client-side rate limit, which would otherwise
// dominate.
func fast(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 5000, 5000
	return cfg
}

func createObjects(ctx context.Context, cs *kubernetes.Clientset, n int) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: realNamespace}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	data := map[string]string{"payload": strings.Repeat("x", 512)}
	jobs := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				_, err := cs.CoreV1().ConfigMaps(realNamespace).Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: "cm-" + strconv.Itoa(i), Labels: map[string]string{"bench": "list"}},
					Data:       data,
				}, metav1.CreateOptions{})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	return <-errs
}

// watchLatency updates one ConfigMap n times with admin and returns the
// delays (ms) until cs's watch reports each update.
func watchLatency(ctx context.Context, admin, cs *kubernetes.Clientset, n int) ([]float64, error) {
	name := "watched"
	cm, err := admin.CoreV1().ConfigMaps(realNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		cm, err = admin.CoreV1().ConfigMaps(realNamespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"seq": "0"}}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	w, err := cs.CoreV1().ConfigMaps(realNamespace).Watch(wctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + name, ResourceVersion: cm.ResourceVersion})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var lat []float64
	for i := range n {
		want := "v" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		cm.Data = map[string]string{"seq": want}
		start := time.Now()
		cm, err = admin.CoreV1().ConfigMaps(realNamespace).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			return nil, err
		}
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					return nil, fmt.Errorf("watch closed")
				}
				if ev.Type != kwatch.Modified {
					continue
				}
				if got, _ := ev.Object.(*corev1.ConfigMap); got == nil || got.Data["seq"] != want {
					continue
				}
			case <-wctx.Done():
				return nil, wctx.Err()
			}
			break
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1e3)
	}
	return lat, nil
}

// logsSetup creates a pod on kwok's node and fills the log file kwok
// serves with 16 MiB of lines.
func logsSetup(ctx context.Context, kc *localcluster.Cluster, cs *kubernetes.Clientset) error {
	if kc.PodLogFile == "" || kc.NodeName == "" {
		return fmt.Errorf("no kwok node")
	}
	_, err := cs.CoreV1().Pods(realNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "logger"},
		Spec:       corev1.PodSpec{NodeName: kc.NodeName, Containers: []corev1.Container{{Name: "c", Image: "bench"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		p, err := cs.CoreV1().Pods(realNamespace).Get(ctx, "logger", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod not running")
		}
		time.Sleep(100 * time.Millisecond)
	}
	f, err := os.OpenFile(kc.PodLogFile, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	line := strings.Repeat("y", 200)
	var b bytes.Buffer
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	for b.Len() < 16<<20 {
		fmt.Fprintf(&b, "%s stdout F %s\n", ts, line)
	}
	_, err = f.Write(b.Bytes())
	return err
}
