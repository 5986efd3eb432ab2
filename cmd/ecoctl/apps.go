package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hubclient"
)

// Helm releases through the hub's Helm service (docs/helm.md): reading
// them, and the operations that change them, which the hub runs as jobs.

var releaseHeader = []string{"NAME", "NAMESPACE", "REVISION", "STATUS", "CHART", "APP VERSION", "UPDATED"}

func releaseRows(rels []hubclient.Release) [][]string {
	var rows [][]string
	for _, r := range rels {
		rows = append(rows, []string{r.Name, r.Namespace, strconv.Itoa(r.Revision), r.Status, r.Chart, r.AppVersion, r.Updated.Format(time.RFC3339)})
	}
	return rows
}

// parseRelease reads NS/NAME, or NAME in namespace ns.
func parseRelease(arg, ns string) (string, string, error) {
	if n, name, ok := strings.Cut(arg, "/"); ok {
		if n == "" || name == "" || strings.Contains(name, "/") {
			return "", "", fmt.Errorf("release %q: want NAMESPACE/NAME", arg)
		}
		return n, name, nil
	}
	if arg == "" {
		return "", "", errors.New("no release name")
	}
	return ns, arg, nil
}

// appsError says in plain words why the hub refused a Helm request on
// release ns/name of cluster cl ("" name: the cluster's releases).
func appsError(err error, cl hub.ClusterJSON, ns, name string) error {
	switch {
	case hubclient.IsStatus(err, http.StatusConflict) && name != "":
		hint := ""
		if ae := (*hubclient.APIError)(nil); errors.As(err, &ae) && ae.Operation != "" {
			hint = fmt.Sprintf("; follow it with ecoctl operations get %s --watch", ae.Operation)
		}
		return fmt.Errorf("an operation is already running on release %s/%s in cluster %s%s: %w", ns, name, cl.Name, hint, err)
	case hubclient.IsStatus(err, http.StatusServiceUnavailable):
		return fmt.Errorf("ECO is not connected to cluster %s (%s; ecoctl status %s): %w", cl.Name, cl.Status.State, cl.Name, err)
	}
	return err
}

// changeError is appsError for a request that changes a release: a 403
// says which role it needs.
func changeError(err error, cl hub.ClusterJSON, ns, name string) error {
	if hubclient.IsStatus(err, http.StatusForbidden) {
		return fmt.Errorf("%w (changing releases needs the edit or admin role in cluster %s)", err, cl.Name)
	}
	return appsError(err, cl, ns, name)
}

// opFlags are the flags of a command that starts an operation.
type opFlags struct {
	noWait   bool
	interval time.Duration
}

func (f *opFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "print the operation's ID (its JSON with -o) and return at once instead of waiting for it")
	cmd.Flags().DurationVar(&f.interval, "interval", 500*time.Millisecond, "how often the operation is read while waiting")
}

// follow waits for operation op, streaming its new log lines to stderr,
// and prints its outcome; a failed or interrupted operation is an error
// with Helm's words. With noWait it prints the operation (its ID in a
// table) and returns.
func (a *app) follow(cmd *cobra.Command, c *hubclient.Client, op hubclient.Operation, f opFlags) error {
	if f.noWait {
		if a.output == "table" {
			_, err := fmt.Fprintln(a.stdout, op.ID)
			return err
		}
		return a.print(op, nil, nil)
	}
	fmt.Fprintf(a.stderr, "operation %s: %s of %s/%s\n", op.ID, op.Kind, op.Namespace, op.Release)
	done, err := a.wait(cmd, c, op.ID, f.interval)
	if err != nil {
		return err
	}
	return a.outcome(done)
}

// wait follows operation id until it is finished, streaming its log to
// stderr. The wait outlives a hub restart (the operation does) and ends
// with Ctrl-C, saying the operation goes on.
func (a *app) wait(cmd *cobra.Command, c *hubclient.Client, id string, interval time.Duration) (hubclient.Operation, error) {
	var tail logTail
	outage := false
	op, err := c.WaitOperation(cmd.Context(), id, hubclient.WaitOptions{
		Interval: interval, CallTimeout: a.timeout,
		OnChange: func(op hubclient.Operation) {
			if outage {
				fmt.Fprintln(a.stderr, "the hub answers again")
				outage = false
			}
			fmt.Fprint(a.stderr, tail.next(op.Log, op.Finished()))
		},
		OnUnreachable: func(err error) {
			if !outage {
				fmt.Fprintf(a.stderr, "%v; still waiting for operation %s\n", err, id)
				outage = true
			}
		},
	})
	if err != nil && cmd.Context().Err() != nil {
		return op, fmt.Errorf("stopped waiting; operation %s goes on in the hub (ecoctl operations get %s --watch)", id, id)
	}
	return op, err
}

// outcome prints a finished operation; one that did not succeed is an
// error.
func (a *app) outcome(op hubclient.Operation) error {
	if a.output != "table" {
		if err := a.print(op, nil, nil); err != nil {
			return err
		}
	} else if op.State == hubclient.OperationSucceeded {
		fmt.Fprintf(a.stdout, "operation %s succeeded: %s\n", op.ID, op.Message)
	}
	if op.State != hubclient.OperationSucceeded {
		return fmt.Errorf("operation %s: %s of %s/%s %s: %s", op.ID, op.Kind, op.Namespace, op.Release, op.State, op.Message)
	}
	return nil
}

// logTail returns the lines of an operation's log not printed yet. The
// hub keeps only the log's last 64 KiB: when its start was cut, printing
// resumes after the last line printed.
type logTail struct {
	printed string // the log up to the end of the last line printed
	last    string // that line, with its newline
}

func (t *logTail) next(log string, final bool) string {
	start := 0
	switch {
	case strings.HasPrefix(log, t.printed):
		start = len(t.printed)
	case t.last != "":
		if i := strings.LastIndex(log, t.last); i >= 0 {
			start = i + len(t.last)
		}
	}
	end := strings.LastIndexByte(log, '\n') + 1
	if final {
		end = len(log)
	}
	if end <= start {
		return ""
	}
	out := log[start:end]
	t.printed = log[:end]
	body := strings.TrimSuffix(t.printed, "\n")
	t.last = t.printed[strings.LastIndexByte(body, '\n')+1:]
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out
}

// completeRelease completes CLUSTER, then the cluster's releases as
// NAMESPACE/NAME.
func (a *app) completeRelease(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeClusters(cmd, args, toComplete)
	case 1:
		return a.completeWith(cmd, func(ctx context.Context, c *hubclient.Client) ([]string, error) {
			cl, err := c.FindCluster(ctx, args[0])
			if err != nil {
				return nil, err
			}
			rels, err := c.ListReleases(ctx, cl.ID, "")
			var out []string
			for _, r := range rels {
				if s := r.Namespace + "/" + r.Name; strings.HasPrefix(s, toComplete) {
					out = append(out, s+"\t"+r.Chart)
				}
			}
			return out, err
		})
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeWith runs list for a completion, with the configured hub.
func (a *app) completeWith(cmd *cobra.Command, list func(context.Context, *hubclient.Client) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	defer c.Close()
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	out, err := list(ctx, c)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// chartSpec reads CHART: a chart archive (a .tgz file), or REPO/CHART of
// the App Catalog at version.
func chartSpec(arg, version string) (hubclient.ChartSpec, error) {
	if strings.HasSuffix(arg, ".tgz") {
		if _, err := os.Stat(arg); err == nil {
			if version != "" {
				return hubclient.ChartSpec{}, errors.New("--version is for a catalog chart; the archive has its own")
			}
			data, err := os.ReadFile(arg)
			if err != nil {
				return hubclient.ChartSpec{}, fmt.Errorf("chart archive: %w", err)
			}
			return hubclient.ChartSpec{Archive: data}, nil
		}
	}
	repo, name, ok := strings.Cut(arg, "/")
	if !ok || repo == "" || name == "" || strings.Contains(name, "/") {
		return hubclient.ChartSpec{}, fmt.Errorf("chart %q: want REPO/CHART of the App Catalog (ecoctl catalog search) or a chart archive (.tgz)", arg)
	}
	return hubclient.ChartSpec{Repo: repo, Name: name, Version: version}, nil
}

// printPreview prints a dry run's manifests and notes, or for an upgrade
// its diff.
func (a *app) printPreview(p hubclient.Preview, upgrade bool) error {
	if a.output != "table" {
		return a.print(p, nil, nil)
	}
	if upgrade {
		if p.Diff == "" {
			_, err := fmt.Fprintln(a.stdout, "no change from the deployed revision")
			return err
		}
		_, err := fmt.Fprint(a.stdout, p.Diff)
		return err
	}
	fmt.Fprint(a.stdout, strings.TrimRight(p.Manifest, "\n")+"\n")
	if p.Notes != "" {
		fmt.Fprintf(a.stdout, "\nNOTES:\n%s\n", strings.TrimRight(p.Notes, "\n"))
	}
	return nil
}

func (a *app) appsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"app", "releases"},
		Short:   "list, install, upgrade, roll back and uninstall Helm releases in a cluster",
		Long: `apps manages a cluster's Helm releases through the hub's Helm service: Helm
runs in the hub as you, through the cluster's tunnel, so the cluster's RBAC
applies, and releases are stored as the helm CLI stores them.

install, upgrade, rollback and uninstall are hub jobs: ecoctl waits for the
job, streams Helm's log to stderr and fails with Helm's error if it fails;
--no-wait prints the operation's ID instead (ecoctl operations get ID
--watch follows it). One operation runs on a release at a time.`,
	}
	var ns string
	var all bool
	list := &cobra.Command{
		Use:               "list CLUSTER",
		Short:             "list the cluster's Helm releases (-n NAMESPACE, or -A for every namespace)",
		Args:              cobra.ExactArgs(1),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all && cmd.Flags().Changed("namespace") {
				return errors.New("give -n or -A, not both")
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				n := ns
				if all {
					n = ""
				}
				rels, err := c.ListReleases(ctx, cl.ID, n)
				if err != nil {
					return appsError(err, cl, n, "")
				}
				return a.print(rels, releaseHeader, func() [][]string { return releaseRows(rels) })
			})
		},
	}
	list.Flags().BoolVarP(&all, "all-namespaces", "A", false, "releases of every namespace")

	var rev int
	var showValues, showManifest bool
	get := &cobra.Command{
		Use:   "get CLUSTER NAMESPACE/NAME",
		Short: "show a release: status, chart, app version; its values and manifest with --values and --manifest",
		Example: `  ecoctl apps get prod shop/web
  ecoctl apps get prod web -n shop --revision=2 --values`,
		Args:              cobra.ExactArgs(2),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeRelease,
		RunE: func(cmd *cobra.Command, args []string) error {
			rns, name, err := parseRelease(args[1], ns)
			if err != nil {
				return err
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				d, err := c.GetRelease(ctx, cl.ID, rns, name, rev)
				if err != nil {
					return appsError(err, cl, rns, name)
				}
				if a.output != "table" {
					return a.print(d, nil, nil)
				}
				if err := a.print(d, releaseHeader, func() [][]string { return releaseRows([]hubclient.Release{d.Release}) }); err != nil {
					return err
				}
				if d.Description != "" {
					fmt.Fprintf(a.stdout, "\nDESCRIPTION: %s\n", d.Description)
				}
				if showValues {
					vals := "{}\n"
					if len(d.Values) > 0 {
						b, err := yaml.Marshal(d.Values)
						if err != nil {
							return err
						}
						vals = string(b)
					}
					fmt.Fprintf(a.stdout, "\nVALUES:\n%s", vals)
				}
				if showManifest {
					fmt.Fprintf(a.stdout, "\nMANIFEST:\n%s\n", strings.TrimRight(d.Manifest, "\n"))
				}
				if d.Notes != "" {
					fmt.Fprintf(a.stdout, "\nNOTES:\n%s\n", strings.TrimRight(d.Notes, "\n"))
				}
				return nil
			})
		},
	}
	get.Flags().IntVar(&rev, "revision", 0, "the revision to show (default: the latest)")
	get.Flags().BoolVar(&showValues, "values", false, "print the values given at install or upgrade")
	get.Flags().BoolVar(&showManifest, "manifest", false, "print the manifest Helm applied, hooks included")

	history := &cobra.Command{
		Use:               "history CLUSTER NAMESPACE/NAME",
		Short:             "list a release's revisions, oldest first",
		Args:              cobra.ExactArgs(2),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeRelease,
		RunE: func(cmd *cobra.Command, args []string) error {
			rns, name, err := parseRelease(args[1], ns)
			if err != nil {
				return err
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				h, err := c.ReleaseHistory(ctx, cl.ID, rns, name)
				if err != nil {
					return appsError(err, cl, rns, name)
				}
				return a.print(h, []string{"REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION", "DESCRIPTION"}, func() [][]string {
					var rows [][]string
					for _, r := range h {
						rows = append(rows, []string{strconv.Itoa(r.Revision), r.Updated.Format(time.RFC3339), r.Status, r.Chart, r.AppVersion, r.Description})
					}
					return rows
				})
			})
		},
	}

	cmd.AddCommand(list, get, history, a.appsInstallCmd(&ns), a.appsUpgradeCmd(&ns), a.appsRollbackCmd(&ns), a.appsUninstallCmd(&ns))
	cmd.PersistentFlags().StringVarP(&ns, "namespace", "n", "default", "the namespace: of the releases listed, of one installed, of a release given as NAME")
	return cmd
}

// installFlags are install's and upgrade's.
type installFlags struct {
	version   string
	values    valueFlags
	dryRun    bool
	waitReady bool
	op        opFlags
}

func (f *installFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.version, "version", "", "the catalog chart's version (default: the newest)")
	fl.StringArrayVarP(&f.values.files, "values", "f", nil, "values `file` (YAML; - for stdin); repeat to merge, the last wins")
	fl.StringArrayVar(&f.values.set, "set", nil, "a value: KEY=VALUE[,KEY=VALUE] (a.b for nesting, {x,y} for a list; true, false, null and integers are typed)")
	fl.StringArrayVar(&f.values.setString, "set-string", nil, "a value kept a string: KEY=VALUE[,KEY=VALUE]")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be applied (an upgrade: the diff from the deployed revision) and change nothing")
	fl.BoolVar(&f.waitReady, "wait-ready", false, "the operation succeeds only once the workloads are ready (Helm's --wait)")
	f.op.register(cmd)
}

// completeChart completes CLUSTER, then REPO/CHART from the App Catalog.
func (a *app) completeChart(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return a.completeClusters(cmd, args, toComplete)
	}
	if len(args) > 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeWith(cmd, func(ctx context.Context, c *hubclient.Client) ([]string, error) {
		return chartNames(ctx, c, toComplete)
	})
}

func chartNames(ctx context.Context, c *hubclient.Client, prefix string) ([]string, error) {
	hits, err := c.SearchCharts(ctx, "", 1000)
	var out []string
	for _, h := range hits {
		if s := h.Repo + "/" + h.Name; strings.HasPrefix(s, prefix) {
			out = append(out, s+"\t"+h.Version)
		}
	}
	return out, err
}

func (a *app) appsInstallCmd(ns *string) *cobra.Command {
	var f installFlags
	var name string
	cmd := &cobra.Command{
		Use:   "install CLUSTER REPO/CHART --name=NAME [-n NAMESPACE]",
		Short: "install a chart of the App Catalog (or a chart archive) as a release; waits for the operation",
		Example: `  ecoctl apps install prod demo/shop --name=web -n shop --version=1.0.0 -f values.yaml --set replicaCount=3
  ecoctl apps install prod ./shop-1.0.0.tgz --name=web -n shop --no-wait
  ecoctl apps install prod demo/shop --name=web -n shop --dry-run`,
		Args:              cobra.ExactArgs(2),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeChart,
		RunE: func(cmd *cobra.Command, args []string) error {
			chart, err := chartSpec(args[1], f.version)
			if err != nil {
				return err
			}
			vals, err := f.values.merged(a.stdin, nil)
			if err != nil {
				return err
			}
			req := hubclient.InstallRequest{Namespace: *ns, Name: name, Chart: chart, Values: vals, Wait: f.waitReady}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				if f.dryRun {
					p, err := c.InstallDryRun(ctx, cl.ID, req)
					if err != nil {
						return changeError(err, cl, *ns, name)
					}
					return a.printPreview(p, false)
				}
				op, err := c.Install(ctx, cl.ID, req)
				if err != nil {
					return changeError(err, cl, *ns, name)
				}
				return a.follow(cmd, c, op, f.op)
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the release's name (required)")
	_ = cmd.MarkFlagRequired("name")
	f.register(cmd)
	return cmd
}

func (a *app) appsUpgradeCmd(ns *string) *cobra.Command {
	var f installFlags
	var reuse bool
	cmd := &cobra.Command{
		Use:   "upgrade CLUSTER NAMESPACE/NAME REPO/CHART",
		Short: "upgrade a release to a chart version and values; waits for the operation",
		Long: `upgrade upgrades a release to the chart (REPO/CHART of the App Catalog at
--version, default the newest, or a chart archive) with the values given
(-f, --set); as with helm upgrade, values not given are not kept unless
--reuse-values, which puts the given ones over the release's current values.`,
		Example: `  ecoctl apps upgrade prod shop/web demo/shop --version=1.1.0 --reuse-values --set replicaCount=4
  ecoctl apps upgrade prod shop/web demo/shop --dry-run`,
		Args:              cobra.ExactArgs(3),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeRelease,
		RunE: func(cmd *cobra.Command, args []string) error {
			rns, name, err := parseRelease(args[1], *ns)
			if err != nil {
				return err
			}
			chart, err := chartSpec(args[2], f.version)
			if err != nil {
				return err
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				var base map[string]any
				if reuse {
					cur, err := c.GetRelease(ctx, cl.ID, rns, name, 0)
					if err != nil {
						return appsError(err, cl, rns, name)
					}
					base = cur.Values
				}
				vals, err := f.values.merged(a.stdin, base)
				if err != nil {
					return err
				}
				req := hubclient.InstallRequest{Chart: chart, Values: vals, Wait: f.waitReady}
				if f.dryRun {
					p, err := c.UpgradeDryRun(ctx, cl.ID, rns, name, req)
					if err != nil {
						return changeError(err, cl, rns, name)
					}
					return a.printPreview(p, true)
				}
				op, err := c.Upgrade(ctx, cl.ID, rns, name, req)
				if err != nil {
					return changeError(err, cl, rns, name)
				}
				return a.follow(cmd, c, op, f.op)
			})
		},
	}
	cmd.Flags().BoolVar(&reuse, "reuse-values", false, "start from the release's current values")
	f.register(cmd)
	return cmd
}

func (a *app) appsRollbackCmd(ns *string) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:   "rollback CLUSTER NAMESPACE/NAME [REVISION]",
		Short: "roll a release back to a revision (default: the previous one); waits for the operation",
		Example: `  ecoctl apps history prod shop/web
  ecoctl apps rollback prod shop/web 1`,
		Args:              cobra.RangeArgs(2, 3),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeRelease,
		RunE: func(cmd *cobra.Command, args []string) error {
			rns, name, err := parseRelease(args[1], *ns)
			if err != nil {
				return err
			}
			revision := 0
			if len(args) == 3 {
				if revision, err = strconv.Atoi(args[2]); err != nil || revision < 1 {
					return fmt.Errorf("revision %q: want a revision number (ecoctl apps history)", args[2])
				}
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				op, err := c.Rollback(ctx, cl.ID, rns, name, revision)
				if err != nil {
					return changeError(err, cl, rns, name)
				}
				return a.follow(cmd, c, op, f)
			})
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) appsUninstallCmd(ns *string) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:               "uninstall CLUSTER NAMESPACE/NAME",
		Short:             "uninstall a release; waits for the operation",
		Args:              cobra.ExactArgs(2),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeRelease,
		RunE: func(cmd *cobra.Command, args []string) error {
			rns, name, err := parseRelease(args[1], *ns)
			if err != nil {
				return err
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				op, err := c.Uninstall(ctx, cl.ID, rns, name)
				if err != nil {
					return changeError(err, cl, rns, name)
				}
				return a.follow(cmd, c, op, f)
			})
		},
	}
	f.register(cmd)
	return cmd
}

var operationHeader = []string{"ID", "KIND", "RELEASE", "STATE", "REVISION", "USER", "CREATED", "MESSAGE"}

func operationRows(ops []hubclient.Operation) [][]string {
	var rows [][]string
	for _, o := range ops {
		rev := "-"
		if o.Revision > 0 {
			rev = strconv.Itoa(o.Revision)
		}
		rows = append(rows, []string{o.ID, o.Kind, o.Namespace + "/" + o.Release, o.State, rev, o.User, ago(&o.CreatedAt), o.Message})
	}
	return rows
}

func (a *app) operationsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operations", Aliases: []string{"operation", "ops", "op"}, Short: "show the Helm operations the hub runs as jobs"}
	var watch, showLog bool
	var interval time.Duration
	get := &cobra.Command{
		Use:   "get ID",
		Short: "show an operation; --watch follows it to its end, its log on stderr",
		Long: `get shows a Helm operation: its state (running, recovering, succeeded, failed
or interrupted) and message (Helm's error when it failed); --log prints
Helm's log too. --watch follows a running operation, streaming its log to
stderr, and exits non-zero if it does not succeed.`,
		Args:    cobra.ExactArgs(1),
		PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if watch {
				op, err := a.wait(cmd, c, args[0], interval)
				if err != nil {
					return err
				}
				return a.outcome(op)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			op, err := c.GetOperation(ctx, args[0])
			if err != nil {
				return err
			}
			if err := a.print(op, operationHeader, func() [][]string { return operationRows([]hubclient.Operation{op}) }); err != nil {
				return err
			}
			if showLog && a.output == "table" && op.Log != "" {
				fmt.Fprintf(a.stdout, "\nLOG:\n%s\n", strings.TrimRight(op.Log, "\n"))
			}
			return nil
		},
	}
	get.Flags().BoolVarP(&watch, "watch", "w", false, "follow the operation to its end, streaming its log to stderr")
	get.Flags().BoolVar(&showLog, "log", false, "print Helm's log of the operation")
	get.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "how often --watch reads the operation")
	var q hubclient.OperationQuery
	list := &cobra.Command{
		Use:               "list CLUSTER",
		Short:             "list a cluster's Helm operations, newest first",
		Args:              cobra.ExactArgs(1),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				ops, err := c.ListOperations(ctx, cl.ID, q)
				if err != nil {
					return err
				}
				return a.print(ops, operationHeader, func() [][]string { return operationRows(ops) })
			})
		},
	}
	list.Flags().StringVarP(&q.Namespace, "namespace", "n", "", "only operations on releases of this namespace")
	list.Flags().StringVar(&q.Release, "release", "", "only operations on releases of this name")
	cmd.AddCommand(get, list)
	return cmd
}
