package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hubclient"
)

// env names ecoctl reads.
const (
	envConfig = "ECOCTL_CONFIG"
	envToken  = "ECO_TOKEN"
)

// app is what every command shares: streams, flags and the environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// configPath is --config.
	configPath string
	// output is -o.
	output string
	// timeout is --timeout.
	timeout time.Duration
	// stdinRead: a secret was read from stdin.
	stdinRead bool
}

// newRoot returns ecoctl's command tree.
func newRoot(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := &cobra.Command{
		Use:   "ecoctl",
		Short: "ecoctl talks to an eco hub",
		Long: `ecoctl manages clusters through an eco hub's API: the clusters, their
agents and access, and what runs in them: Helm releases from the App
Catalog, managed add-ons, Argo CD registration, clusters imported from
cloud accounts.

Start with "ecoctl login HUB-URL --ca-file=CA --token-file=TOKEN"; it keeps
the hub URL, CA and token in a config file (mode 0600).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config `file` (default $"+envConfig+", else USER-CONFIG-DIR/eco/ecoctl.yaml)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "time limit of each call to the hub")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddCommand(a.loginCmd(), a.clustersCmd(), a.installCmd(), a.getCredentialsCmd(), a.statusCmd(), a.tokensCmd(), a.whoamiCmd(),
		a.catalogCmd(), a.appsCmd(), a.operationsCmd(), a.addonsCmd(), a.argocdCmd(), a.cloudCmd())
	return root
}

// Config is ecoctl's config file.
type Config struct {
	// Hub is the hub's URL.
	Hub string `json:"hub"`
	// CA is the PEM CA bundle that verifies the hub; empty means the
	// system roots.
	CA string `json:"ca,omitempty"`
	// Token is the hub API token.
	Token string `json:"token"`
}

func (a *app) path() (string, error) {
	if a.configPath != "" {
		return a.configPath, nil
	}
	if p := a.getenv(envConfig); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the config directory: %w (give --config)", err)
	}
	return filepath.Join(dir, "eco", "ecoctl.yaml"), nil
}

func (a *app) loadConfig() (Config, error) {
	var c Config
	p, err := a.path()
	if err != nil {
		return c, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("not logged in: no %s (run ecoctl login HUB-URL)", p)
	}
	if err != nil {
		return c, fmt.Errorf("reading the config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", p, err)
	}
	if c.Hub == "" {
		return c, fmt.Errorf("config %s names no hub (run ecoctl login HUB-URL)", p)
	}
	if t := a.getenv(envToken); t != "" {
		c.Token = t
	}
	return c, nil
}

// saveConfig writes c with mode 0600 in a directory of mode 0700.
func (a *app) saveConfig(c Config) (string, error) {
	p, err := a.path()
	if err != nil {
		return "", err
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("writing the config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".ecoctl-*.yaml")
	if err != nil {
		return "", fmt.Errorf("writing the config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing the config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing the config: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("writing the config: %w", err)
	}
	return p, nil
}

// client returns a hub client from the config.
func (a *app) client() (*hubclient.Client, error) {
	c, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	return hubclient.New(hubclient.Config{URL: c.Hub, CAPEM: []byte(c.CA), Token: c.Token, Timeout: a.timeout})
}

// ctx is a command's context bounded by --timeout.
func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

// print writes v as -o says; table calls rows for a header and rows.
func (a *app) print(v any, header []string, rows func() [][]string) error {
	switch a.output {
	case "json":
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	case "table", "":
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		if len(header) > 0 {
			fmt.Fprintln(tw, strings.Join(header, "\t"))
		}
		for _, r := range rows() {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	return fmt.Errorf("-o %q: want table, json or yaml", a.output)
}

// checkOutput refuses an unknown -o before any call.
func (a *app) checkOutput(*cobra.Command, []string) error {
	switch a.output {
	case "table", "json", "yaml", "":
		return nil
	}
	return fmt.Errorf("-o %q: want table, json or yaml", a.output)
}

// ago formats t relative to now, or "-".
func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return time.Since(*t).Truncate(time.Second).String() + " ago"
}

// completeClusters completes cluster names.
func (a *app) completeClusters(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	defer c.Close()
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	cls, err := c.ListClusters(ctx, hubclient.ListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var out []string
	for _, cl := range cls {
		if strings.HasPrefix(cl.Name, toComplete) {
			out = append(out, cl.Name+"\t"+cl.ID)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// readSecret reads a secret from file, or from stdin for "-" (once per
// run): never from a flag's value, which the shell history and ps keep.
// Surrounding white space is dropped.
func (a *app) readSecret(flag, file string) (string, error) {
	var data []byte
	var err error
	if file == "-" {
		if a.stdinRead {
			return "", fmt.Errorf("%s -: stdin was read already", flag)
		}
		a.stdinRead = true
		data, err = io.ReadAll(a.stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("%s: empty", flag)
	}
	return s, nil
}
