package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hubclient"
)

func (a *app) loginCmd() *cobra.Command {
	var caFile, tokenFile string
	var tokenStdin bool
	cmd := &cobra.Command{
		Use:   "login HUB-URL",
		Short: "check a hub URL, CA and token, and keep them in the config file",
		Long: `login checks that the hub answers with the given CA and accepts the token,
then writes them to the config file with mode 0600.

The token comes from --token-file, --token-stdin or $` + envToken + `; never put
it on the command line, where the shell history and ps would keep it.`,
		Example: `  ecoctl login https://eco.example.com --ca-file=ca.crt --token-file=admin.token
  pass show eco/token | ecoctl login https://eco.example.com --token-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var token string
			switch {
			case tokenFile != "" && tokenStdin:
				return errors.New("give --token-file or --token-stdin, not both")
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				token = string(b)
			case tokenStdin:
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("reading the token from stdin: %w", err)
				}
				token = line
			default:
				token = a.getenv(envToken)
			}
			token = strings.TrimSpace(token)
			if token == "" {
				return errors.New("no token: give --token-file, --token-stdin or $" + envToken)
			}
			var ca []byte
			if caFile != "" {
				var err error
				if ca, err = os.ReadFile(caFile); err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
			}
			c, err := hubclient.New(hubclient.Config{URL: args[0], CAPEM: ca, Token: token, Timeout: a.timeout})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			who, err := c.Whoami(ctx)
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			p, err := a.saveConfig(Config{Hub: c.URL(), CA: string(ca), Token: token})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Logged in to %s (hub %s) as %s (role %s); config in %s\n", c.URL(), who.Version, who.Name, who.Role, p)
			return nil
		},
	}
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM `file` of the CA that signed the hub's certificate (default: the system roots)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "`file` holding the hub API token")
	cmd.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token from the first line of stdin")
	return cmd
}

func (a *app) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "show who the configured token is",
		Args:    cobra.NoArgs,
		PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				w, err := c.Whoami(ctx)
				if err != nil {
					return err
				}
				return a.print(w, []string{"NAME", "ROLE", "KUBERNETES USER", "READ-ONLY", "HUB VERSION"}, func() [][]string {
					return [][]string{{w.Name, w.Role, w.KubernetesUser, fmt.Sprint(w.ReadOnly), w.Version}}
				})
			})
		},
	}
}

func clusterRows(cls []hub.ClusterJSON) [][]string {
	var rows [][]string
	for _, c := range cls {
		rows = append(rows, []string{c.Name, c.ID, c.Provider, c.Status.State, c.Status.AgentVersion, c.Status.KubernetesVersion, c.IdentityState})
	}
	return rows
}

var clusterHeader = []string{"NAME", "ID", "PROVIDER", "STATE", "AGENT", "KUBERNETES", "IDENTITY"}

func (a *app) clustersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "clusters", Aliases: []string{"cluster"}, Short: "list, show, import and delete clusters"}
	var search string
	list := &cobra.Command{
		Use:     "list",
		Short:   "list the clusters you may see",
		Args:    cobra.NoArgs,
		PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				cls, err := c.ListClusters(ctx, hubclient.ListOptions{Search: search})
				if err != nil {
					return err
				}
				return a.print(cls, clusterHeader, func() [][]string { return clusterRows(cls) })
			})
		},
	}
	list.Flags().StringVar(&search, "search", "", "only clusters whose name contains this")
	get := &cobra.Command{
		Use:               "get CLUSTER",
		Short:             "show one cluster (by name or ID)",
		Args:              cobra.ExactArgs(1),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				return a.print(cl, clusterHeader, func() [][]string { return clusterRows([]hub.ClusterJSON{cl}) })
			})
		},
	}
	var req hubclient.ImportRequest
	imp := &cobra.Command{
		Use:   "import NAME",
		Short: "create a cluster record on the hub; then install its agent (ecoctl install)",
		Example: `  ecoctl clusters import prod-eu --provider=eks --region=eu-west-1
  ecoctl install prod-eu --apply`,
		Args:    cobra.ExactArgs(1),
		PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				req.Name = args[0]
				cl, err := c.ImportCluster(ctx, req)
				if err != nil {
					return err
				}
				return a.print(cl, clusterHeader, func() [][]string { return clusterRows([]hub.ClusterJSON{cl}) })
			})
		},
	}
	imp.Flags().StringVar(&req.Provider, "provider", "generic", "provider: generic, eks, aks or gke")
	imp.Flags().StringVar(&req.Region, "region", "", "region, for display")
	imp.Flags().StringVar(&req.CloudRef, "cloud-ref", "", "the cluster's reference at its cloud provider")
	imp.Flags().StringVar(&req.OIDCIssuer, "oidc-issuer", "", "the cluster's service-account issuer URL, if public: agents then prove their identity against it")
	imp.Flags().BoolVar(&req.RequireApproval, "require-approval", false, "hold the first agent until an admin approves its cluster's keys")
	_ = imp.RegisterFlagCompletionFunc("provider", cobra.FixedCompletions([]string{"generic", "eks", "aks", "gke"}, cobra.ShellCompDirectiveNoFileComp))
	del := &cobra.Command{
		Use:               "delete CLUSTER",
		Short:             "delete a cluster from the hub: its agent credential is revoked and its tunnel closed",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				if err := c.DeleteCluster(ctx, cl.ID); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "cluster %s (%s) deleted\n", cl.Name, cl.ID)
				return nil
			})
		},
	}
	rename := &cobra.Command{
		Use:               "rename CLUSTER NEW-NAME",
		Short:             "rename a cluster; its ID, kubeconfigs, agent and Argo CD Secret stay",
		Args:              cobra.ExactArgs(2),
		PreRunE:           a.checkOutput,
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				name := args[1]
				updated, err := c.UpdateCluster(ctx, cl.ID, hubclient.UpdateRequest{Name: &name})
				if err != nil {
					return err
				}
				return a.print(updated, clusterHeader, func() [][]string { return clusterRows([]hub.ClusterJSON{updated}) })
			})
		},
	}
	label := &cobra.Command{
		Use:   "label CLUSTER KEY=VALUE... [KEY-...]",
		Short: "set (KEY=VALUE) or remove (KEY-) a cluster's labels; Argo CD's Secret for it follows",
		Example: `  ecoctl clusters label prod-eu env=prod team.example.com/owner=web
  ecoctl clusters label prod-eu env-`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, remove, err := parseLabelArgs(args[1:])
			if err != nil {
				return err
			}
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				labels := maps.Clone(cl.Labels)
				if labels == nil {
					labels = map[string]string{}
				}
				maps.Copy(labels, set)
				for _, k := range remove {
					delete(labels, k)
				}
				updated, err := c.UpdateCluster(ctx, cl.ID, hubclient.UpdateRequest{Labels: &labels})
				if err != nil {
					return err
				}
				keys := slices.Sorted(maps.Keys(updated.Labels))
				for _, k := range keys {
					fmt.Fprintf(a.stdout, "%s=%s\n", k, updated.Labels[k])
				}
				if len(keys) == 0 {
					fmt.Fprintf(a.stdout, "cluster %s has no labels\n", updated.Name)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(list, get, imp, rename, label, del)
	return cmd
}

// parseLabelArgs reads KEY=VALUE (set) and KEY- (remove) arguments, as
// kubectl label does; the hub checks the keys and values themselves.
func parseLabelArgs(args []string) (set map[string]string, remove []string, err error) {
	set = map[string]string{}
	for _, arg := range args {
		if k, v, ok := strings.Cut(arg, "="); ok {
			if k == "" {
				return nil, nil, fmt.Errorf("label %q: no key", arg)
			}
			set[k] = v
			continue
		}
		if k, ok := strings.CutSuffix(arg, "-"); ok && k != "" {
			remove = append(remove, k)
			continue
		}
		return nil, nil, fmt.Errorf("label %q: want KEY=VALUE to set or KEY- to remove", arg)
	}
	for _, k := range remove {
		if _, both := set[k]; both {
			return nil, nil, fmt.Errorf("label %s is both set and removed", k)
		}
	}
	return set, remove, nil
}

// withClient calls f with a client of the configured hub, closed after,
// and a context bounded by --timeout.
func (a *app) withClient(cmd *cobra.Command, f func(context.Context, *hubclient.Client) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	return f(ctx, c)
}

// withCluster finds CLUSTER by ID or name and calls f.
func (a *app) withCluster(cmd *cobra.Command, ref string, f func(context.Context, *hubclient.Client, hub.ClusterJSON) error) error {
	return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
		cl, err := c.FindCluster(ctx, ref)
		if err != nil {
			return err
		}
		return f(ctx, c, cl)
	})
}

func (a *app) installCmd() *cobra.Command {
	var apply bool
	var kubeconfig, kubeContext, kubectl string
	var proxy hubclient.InstallOptions
	cmd := &cobra.Command{
		Use:   "install CLUSTER",
		Short: "print the cluster's agent install YAML, or apply it with kubectl",
		Long: `install prints CLUSTER's install YAML (it holds the agent's credential:
treat it as a secret).

With --apply it runs kubectl apply with the current kubectl context (or
--context), after checking that the context is CLUSTER: if the hub knows
the cluster's fingerprint (the kube-system namespace UID its agent
reported), the context must show the same; otherwise the context's name
or its cluster's name must contain CLUSTER's name, or --context must be
given explicitly.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				y, err := c.InstallYAML(ctx, cl.ID, proxy)
				if err != nil {
					return err
				}
				if !apply {
					_, err := a.stdout.Write(y)
					return err
				}
				ctxName, err := a.checkContext(ctx, c, cl, kubeconfig, kubeContext, cmd.Flags().Changed("context"))
				if err != nil {
					return err
				}
				kargs := []string{"apply", "-f", "-", "--context=" + ctxName}
				if kubeconfig != "" {
					kargs = append(kargs, "--kubeconfig="+kubeconfig)
				}
				k := exec.CommandContext(ctx, kubectl, kargs...)
				k.Stdin = bytes.NewReader(y)
				k.Stdout, k.Stderr = a.stdout, a.stderr
				if err := k.Run(); err != nil {
					return fmt.Errorf("kubectl apply: %w", err)
				}
				fmt.Fprintf(a.stdout, "applied to context %s; watch it connect: ecoctl status %s --watch\n", ctxName, cl.Name)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&apply, "apply", false, "apply the YAML with kubectl instead of printing it")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig `file` for --apply (default: kubectl's: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVar(&kubeContext, "context", "", "kubeconfig context for --apply (default: the current one)")
	cmd.Flags().StringVar(&kubectl, "kubectl", "kubectl", "kubectl `command` for --apply")
	cmd.Flags().StringVar(&proxy.HTTPSProxy, "https-proxy", "", "`URL` of the proxy (http, https or socks5) the agent dials the hub through: its HTTPS_PROXY")
	cmd.Flags().StringVar(&proxy.NoProxy, "no-proxy", "", "the agent's NO_PROXY, with --https-proxy")
	return cmd
}

// loadKubeconfig loads the kubeconfig as kubectl would (explicit file,
// else $KUBECONFIG, else ~/.kube/config).
func loadKubeconfig(file string) clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = file
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
}

// checkContext returns the kubeconfig context --apply uses, after checking
// it is cluster cl.
func (a *app) checkContext(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON, kubeconfig, kubeContext string, explicit bool) (string, error) {
	raw, err := loadKubeconfig(kubeconfig).RawConfig()
	if err != nil {
		return "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	name := kubeContext
	if name == "" {
		name = raw.CurrentContext
	}
	kc, ok := raw.Contexts[name]
	if name == "" || !ok {
		return "", fmt.Errorf("kubeconfig context %q not found (give --context)", name)
	}
	// The hub's fingerprint, when it has one and may tell this user.
	var fingerprint string
	if ij, err := c.Identity(ctx, cl.ID); err == nil {
		fingerprint = ij.Fingerprint
	} else if !hubclient.IsStatus(err, http.StatusForbidden) {
		return "", err
	}
	if fingerprint != "" {
		rc, err := clientcmd.NewNonInteractiveClientConfig(raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return "", fmt.Errorf("kubeconfig context %s: %w", name, err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return "", err
		}
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading kube-system's UID through context %s to check it is cluster %s: %w", name, cl.Name, err)
		}
		if string(ns.UID) != fingerprint {
			return "", fmt.Errorf("context %s is not cluster %s: its kube-system namespace UID is %s, the hub knows %s", name, cl.Name, ns.UID, fingerprint)
		}
		return name, nil
	}
	if explicit || strings.Contains(name, cl.Name) || strings.Contains(kc.Cluster, cl.Name) {
		return name, nil
	}
	return "", fmt.Errorf("the current context %s does not look like cluster %s (neither it nor its cluster %s contains the name); give --context=%s to confirm", name, cl.Name, kc.Cluster, name)
}

func (a *app) getCredentialsCmd() *cobra.Command {
	var kubeconfig string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "get-credentials CLUSTER",
		Short: "merge a context reaching CLUSTER through the hub into your kubeconfig",
		Long: `get-credentials asks the hub for a kubeconfig for CLUSTER (a token for that
cluster alone, which expires), merges its cluster, user and context into the
kubeconfig (--kubeconfig, else the first existing file of $KUBECONFIG, else
~/.kube/config) and makes it the current context, like gcloud container
clusters get-credentials.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				data, err := c.Kubeconfig(ctx, cl.ID, ttl)
				if err != nil {
					return err
				}
				got, err := clientcmd.Load(data)
				if err != nil {
					return fmt.Errorf("the hub's kubeconfig: %w", err)
				}
				path := kubeconfig
				if path == "" {
					path = clientcmd.NewDefaultClientConfigLoadingRules().GetDefaultFilename()
				}
				merged, err := mergeKubeconfig(path, got)
				if err != nil {
					return err
				}
				if err := clientcmd.WriteToFile(*merged, path); err != nil {
					return fmt.Errorf("writing %s: %w", path, err)
				}
				if err := os.Chmod(path, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "context %s for cluster %s written to %s and made current\n", got.CurrentContext, cl.Name, path)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig `file` to merge into")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime of the cluster token (default: the hub's, 8h)")
	return cmd
}

// mergeKubeconfig returns the kubeconfig at path (empty if absent) with
// add's clusters, users and contexts put in, replacing those of the same
// names, and add's current context made current.
func mergeKubeconfig(path string, add *clientcmdapi.Config) (*clientcmdapi.Config, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if errors.Is(err, os.ErrNotExist) {
		cfg = clientcmdapi.NewConfig()
	} else if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	for k, v := range add.Clusters {
		cfg.Clusters[k] = v
	}
	for k, v := range add.AuthInfos {
		cfg.AuthInfos[k] = v
	}
	for k, v := range add.Contexts {
		cfg.Contexts[k] = v
	}
	cfg.CurrentContext = add.CurrentContext
	return cfg, nil
}

func (a *app) statusCmd() *cobra.Command {
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:               "status CLUSTER",
		Short:             "show a cluster's operator status; --watch prints each change",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeClusters,
		PreRunE:           a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.ctx(cmd)
			cl, err := c.FindCluster(ctx, args[0])
			cancel()
			if err != nil {
				return err
			}
			header := []string{"CLUSTER", "STATE", "REASON", "SINCE", "HEARTBEAT", "AGENT", "KUBERNETES"}
			show := func(st hub.StatusJSON) error {
				return a.print(st, header, func() [][]string {
					return [][]string{{cl.Name, st.State, st.Reason, st.Since.Format(time.RFC3339), ago(st.LastHeartbeat), st.AgentVersion, st.KubernetesVersion}}
				})
			}
			var last *hub.StatusJSON
			outage := false
			for {
				ctx, cancel := a.ctx(cmd)
				st, err := c.Status(ctx, cl.ID)
				cancel()
				switch {
				case err != nil && watch && last != nil && errors.Is(err, hubclient.ErrUnreachable) && cmd.Context().Err() == nil:
					// A hub restarting (an upgrade) does not end the watch.
					if !outage {
						fmt.Fprintf(a.stderr, "%v; still watching\n", err)
						outage = true
					}
					select {
					case <-cmd.Context().Done():
						return nil
					case <-time.After(interval):
					}
					continue
				case err != nil && cmd.Context().Err() != nil:
					return nil
				case err != nil:
					return err
				case outage:
					fmt.Fprintln(a.stderr, "the hub answers again")
					outage = false
				}
				if last == nil || st.State != last.State || st.Reason != last.Reason || !st.Since.Equal(last.Since) {
					if err := show(st); err != nil {
						return err
					}
					if last == nil && a.output == "table" {
						header = header[:0] // the header once
					}
				}
				if !watch {
					return nil
				}
				last = &st
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep watching, through hub restarts; print each change of state")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch asks")
	return cmd
}

func (a *app) tokensCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Aliases: []string{"token"}, Short: "list, create and revoke hub API tokens (admins)"}
	header := []string{"ID", "NAME", "ROLE", "READ-ONLY", "CLUSTERS", "EXPIRES", "LAST USED", "REVOKED"}
	rows := func(ts []hub.TokenJSON) [][]string {
		var out [][]string
		for _, t := range ts {
			exp := "never"
			if t.ExpiresAt != nil {
				exp = t.ExpiresAt.Format(time.RFC3339)
			}
			cl := "all"
			if t.Clusters != nil {
				cl = strings.Join(t.Clusters, ",")
			}
			rev := "-"
			if t.RevokedAt != nil {
				rev = t.RevokedAt.Format(time.RFC3339)
			}
			out = append(out, []string{t.ID, t.Name, t.Role, fmt.Sprint(t.ReadOnly), cl, exp, ago(t.LastUsedAt), rev})
		}
		return out
	}
	list := &cobra.Command{
		Use: "list", Short: "list API tokens", Args: cobra.NoArgs, PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				ts, err := c.ListTokens(ctx)
				if err != nil {
					return err
				}
				return a.print(ts, header, func() [][]string { return rows(ts) })
			})
		},
	}
	var req hubclient.TokenRequest
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "create an API token; its secret is printed once",
		Example: `  ecoctl tokens create ci --role=member --clusters=prod-eu --expires-in=720h
  ecoctl tokens create auditor --role=member --read-only -o json`,
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				req.Name = args[0]
				// Cluster names to IDs.
				for i, ref := range req.Clusters {
					cl, err := c.FindCluster(ctx, ref)
					if err != nil {
						return err
					}
					req.Clusters[i] = cl.ID
				}
				t, err := c.CreateToken(ctx, req)
				if err != nil {
					return err
				}
				if a.output == "table" {
					fmt.Fprintf(a.stdout, "token %s (%s) created; its secret, shown only this once:\n\n  %s\n\n", t.ID, t.Name, t.Token)
					return nil
				}
				return a.print(t, nil, nil)
			})
		},
	}
	create.Flags().StringVar(&req.Role, "role", "member", "role: admin or member")
	create.Flags().StringSliceVar(&req.Groups, "groups", nil, "groups of the token's user")
	create.Flags().StringVar(&req.ExpiresIn, "expires-in", "", "lifetime, a Go duration such as 720h (default: the hub's)")
	create.Flags().BoolVar(&req.NeverExpires, "never-expires", false, "a token without expiry")
	create.Flags().StringSliceVar(&req.Clusters, "clusters", nil, "only these clusters (names or IDs)")
	create.Flags().BoolVar(&req.ReadOnly, "read-only", false, "read-only token")
	_ = create.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"admin", "member"}, cobra.ShellCompDirectiveNoFileComp))
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "revoke an API token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				if err := c.RevokeToken(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "token %s revoked\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(list, create, revoke)
	return cmd
}
