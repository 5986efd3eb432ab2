package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eco-project/eco/hubclient"
)

// The App Catalog: chart repositories, search and a chart's page.

var repoHeader = []string{"NAME", "KIND", "URL", "CHARTS", "VERSIONS", "REFRESHED", "STATUS"}

func repoRows(rs []hubclient.Repository) [][]string {
	var rows [][]string
	for _, r := range rs {
		st := "ok"
		switch {
		case r.Refreshing:
			st = "refreshing"
			if r.Progress != "" {
				st += ": " + r.Progress
			}
		case r.RefreshError != "":
			st = "error: " + r.RefreshError
		case len(r.Missing) > 0:
			st = "missing: " + strings.Join(slices.Sorted(maps.Keys(r.Missing)), ", ")
		case r.Notice != "":
			st = "ok: " + r.Notice
		}
		kind := r.Kind
		if r.BuiltIn {
			kind += " (built in)"
		}
		rows = append(rows, []string{r.Name, kind, r.URL, strconv.Itoa(r.Charts), strconv.Itoa(r.Versions), ago(r.RefreshedAt), st})
	}
	return rows
}

// waitRefreshed waits until repository name is no longer refreshing; a
// failed refresh is an error.
func (a *app) waitRefreshed(cmd *cobra.Command, c *hubclient.Client, name string) (hubclient.Repository, error) {
	for {
		ctx, cancel := a.ctx(cmd)
		r, err := c.GetRepository(ctx, name)
		cancel()
		switch {
		case err != nil:
			return r, err
		case !r.Refreshing && r.RefreshError != "":
			return r, fmt.Errorf("repository %s: the refresh failed: %s", name, r.RefreshError)
		case !r.Refreshing:
			return r, nil
		}
		select {
		case <-cmd.Context().Done():
			return r, fmt.Errorf("stopped waiting; repository %s goes on refreshing in the hub", name)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *app) completeRepos(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeWith(cmd, func(ctx context.Context, c *hubclient.Client) ([]string, error) {
		rs, err := c.ListRepositories(ctx)
		var out []string
		for _, r := range rs {
			if strings.HasPrefix(r.Name, toComplete) {
				out = append(out, r.Name+"\t"+r.URL)
			}
		}
		return out, err
	})
}

func (a *app) catalogCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "the App Catalog: chart repositories, search, a chart's versions, values and README"}
	repos := &cobra.Command{Use: "repos", Aliases: []string{"repo", "repositories"}, Short: "list, add, remove and refresh chart repositories (changes: hub admins)"}
	list := &cobra.Command{
		Use: "list", Short: "list the chart repositories, the built-in eco-addons among them, with refresh progress",
		Args: cobra.NoArgs, PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				rs, err := c.ListRepositories(ctx)
				if err != nil {
					return err
				}
				return a.print(rs, repoHeader, func() [][]string { return repoRows(rs) })
			})
		},
	}
	var req hubclient.RepositoryRequest
	var passwordFile, tokenFile, caFile string
	var wait bool
	add := &cobra.Command{
		Use:   "add NAME URL",
		Short: "add an HTTP chart repository (https://...) or an OCI registry (oci://host/path [--chart=NAME...])",
		Long: `add adds a chart repository to the App Catalog; the hub refreshes its index
in the background (--wait waits for it and fails if it fails).

An OCI registry's charts are discovered through its catalog API; a
registry without one (GHCR, Docker Hub) is refused unless --chart names
the charts to list.

A password or bearer token is read from a file or stdin (-), never from
the command line; the hub keeps it sealed and never shows it again.`,
		Example: `  ecoctl catalog repos add bitnami https://charts.bitnami.com/bitnami --wait
  ecoctl catalog repos add internal https://charts.corp.example --username=ci --password-file=- --ca-file=corp-ca.pem
  ecoctl catalog repos add registry oci://registry.corp.example/charts --username=ci --password-file=-
  ecoctl catalog repos add ghcr oci://ghcr.io/example/charts --chart=web --chart=worker --token-file=ghcr.token`,
		Args: cobra.ExactArgs(2), PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name, req.URL = args[0], args[1]
			if passwordFile != "" && tokenFile != "" {
				return errors.New("give --password-file or --token-file, not both")
			}
			var err error
			if passwordFile != "" {
				if req.Username == "" {
					return errors.New("--password-file needs --username")
				}
				if req.Password, err = a.readSecret("--password-file", passwordFile); err != nil {
					return err
				}
			}
			if tokenFile != "" {
				if req.Token, err = a.readSecret("--token-file", tokenFile); err != nil {
					return err
				}
			}
			if caFile != "" {
				ca, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				req.CAPEM = string(ca)
			}
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				r, err := c.AddRepository(ctx, req)
				if err != nil {
					return err
				}
				if wait {
					if r, err = a.waitRefreshed(cmd, c, r.Name); err != nil {
						return err
					}
				}
				return a.print(r, repoHeader, func() [][]string { return repoRows([]hubclient.Repository{r}) })
			})
		},
	}
	add.Flags().StringVar(&req.Username, "username", "", "user name for basic auth")
	add.Flags().StringVar(&passwordFile, "password-file", "", "`file` holding the basic-auth password (- for stdin)")
	add.Flags().StringVar(&tokenFile, "token-file", "", "`file` holding a bearer token instead of a password (- for stdin)")
	add.Flags().StringVar(&caFile, "ca-file", "", "PEM `file` of the CA that signed the repository's certificate")
	add.Flags().StringSliceVar(&req.Charts, "chart", nil, "an OCI registry's chart to list instead of discovering them (repeat, or comma-separated)")
	add.Flags().BoolVar(&wait, "wait", false, "wait for the first refresh; fail if it fails")
	remove := &cobra.Command{
		Use: "remove NAME", Aliases: []string{"rm", "delete"}, Short: "remove a chart repository (a built-in one cannot be)",
		Args: cobra.ExactArgs(1), ValidArgsFunction: a.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				if err := c.RemoveRepository(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "repository %s removed\n", args[0])
				return nil
			})
		},
	}
	var refreshWait bool
	refresh := &cobra.Command{
		Use: "refresh NAME", Short: "refresh a repository's index now (--wait waits for it)",
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput, ValidArgsFunction: a.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				r, err := c.RefreshRepository(ctx, args[0])
				if err != nil {
					return err
				}
				if refreshWait {
					if r, err = a.waitRefreshed(cmd, c, r.Name); err != nil {
						return err
					}
				}
				return a.print(r, repoHeader, func() [][]string { return repoRows([]hubclient.Repository{r}) })
			})
		},
	}
	refresh.Flags().BoolVar(&refreshWait, "wait", false, "wait for the refresh; fail if it fails")
	repos.AddCommand(list, add, remove, refresh)

	var limit int
	search := &cobra.Command{
		Use:   "search [TERM...]",
		Short: "search charts by name, description and keywords (every term must match); no term lists them all",
		Args:  cobra.ArbitraryArgs, PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				hits, err := c.SearchCharts(ctx, strings.Join(args, " "), limit)
				if err != nil {
					return err
				}
				return a.print(hits, []string{"CHART", "VERSION", "APP VERSION", "VERSIONS", "DESCRIPTION"}, func() [][]string {
					var rows [][]string
					for _, h := range hits {
						desc := h.Description
						if h.Deprecated {
							desc = "(deprecated) " + desc
						}
						rows = append(rows, []string{h.Repo + "/" + h.Name, h.Version, h.AppVersion, strconv.Itoa(h.Versions), desc})
					}
					return rows
				})
			})
		},
	}
	search.Flags().IntVar(&limit, "limit", 0, "at most this many charts (default: the hub's, 100)")

	var version string
	var readme bool
	show := &cobra.Command{
		Use:   "show REPO/CHART",
		Short: "show a chart: its versions and default values (--readme: its README too)",
		Example: `  ecoctl catalog show demo/shop
  ecoctl catalog show demo/shop --version=1.0.0 --readme`,
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return a.completeWith(cmd, func(ctx context.Context, c *hubclient.Client) ([]string, error) {
				return chartNames(ctx, c, toComplete)
			})
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, name, ok := strings.Cut(args[0], "/")
			if !ok || repo == "" || name == "" {
				return fmt.Errorf("chart %q: want REPO/CHART (ecoctl catalog search)", args[0])
			}
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				p, err := c.Chart(ctx, repo, name, version)
				if err != nil {
					return err
				}
				if !readme {
					p.Readme = ""
				}
				if a.output != "table" {
					return a.print(p, nil, nil)
				}
				return a.printChart(p)
			})
		},
	}
	show.Flags().StringVar(&version, "version", "", "the version to show (default: the newest)")
	show.Flags().BoolVar(&readme, "readme", false, "print the chart's README too")
	cmd.AddCommand(repos, search, show)
	return cmd
}

// printChart prints a chart's page as text.
func (a *app) printChart(p hubclient.ChartPage) error {
	w := a.stdout
	fmt.Fprintf(w, "CHART:        %s/%s\n", p.Repo, p.Name)
	fmt.Fprintf(w, "VERSION:      %s\n", p.Version)
	if p.AppVersion != "" {
		fmt.Fprintf(w, "APP VERSION:  %s\n", p.AppVersion)
	}
	if p.Description != "" {
		fmt.Fprintf(w, "DESCRIPTION:  %s\n", p.Description)
	}
	if p.Home != "" {
		fmt.Fprintf(w, "HOME:         %s\n", p.Home)
	}
	if len(p.Dependencies) > 0 {
		fmt.Fprintf(w, "DEPENDENCIES: %s\n", strings.Join(p.Dependencies, ", "))
	}
	fmt.Fprintln(w, "\nVERSIONS:")
	if err := a.print(nil, []string{"VERSION", "APP VERSION", "CREATED"}, func() [][]string {
		var rows [][]string
		for _, v := range p.Versions {
			created := "-"
			if !v.Created.IsZero() {
				created = v.Created.Format(time.DateOnly)
			}
			rows = append(rows, []string{v.Version, v.AppVersion, created})
		}
		return rows
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nDEFAULT VALUES (%s):\n%s\n", p.Version, strings.TrimRight(p.Values, "\n"))
	if p.Readme != "" {
		fmt.Fprintf(w, "\nREADME:\n%s\n", strings.TrimRight(p.Readme, "\n"))
	}
	return nil
}
