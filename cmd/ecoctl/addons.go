package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hubclient"
)

// Managed add-ons: the hub's curated charts, enabled per cluster or for
// every cluster, with their health in each.

func (a *app) completeAddons(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeWith(cmd, func(ctx context.Context, c *hubclient.Client) ([]string, error) {
			l, err := c.ListAddons(ctx)
			var out []string
			for _, ad := range l.Items {
				if strings.HasPrefix(ad.Name, toComplete) {
					out = append(out, ad.Name+"\t"+ad.Title)
				}
			}
			return out, err
		})
	case 1:
		return a.completeClusters(cmd, nil, toComplete)
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

func rolloutState(r hubclient.AddonRollout) string {
	switch {
	case r.Finished:
		return "finished"
	case r.StoppedAt != "":
		return "stopped at " + r.StoppedAt + ": " + r.Reason
	}
	return "running"
}

func (a *app) addonsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "addons",
		Aliases: []string{"addon"},
		Short:   "managed add-ons: the hub's curated charts, enabled per cluster or everywhere (changes: hub admins)",
	}
	list := &cobra.Command{
		Use: "list", Short: "list the add-ons with their pinned chart versions, and version rollouts",
		Args: cobra.NoArgs, PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				l, err := c.ListAddons(ctx)
				if err != nil {
					return err
				}
				if err := a.print(l, []string{"NAME", "TITLE", "CHART", "VERSION", "NAMESPACE", "RELEASE"}, func() [][]string {
					var rows [][]string
					for _, ad := range l.Items {
						rows = append(rows, []string{ad.Name, ad.Title, ad.Chart.Repo + "/" + ad.Chart.Name, ad.Chart.Version, ad.Namespace, ad.Release})
					}
					return rows
				}); err != nil || a.output != "table" {
					return err
				}
				// The table shows the rollouts under way or stopped; -o
				// json and yaml every one.
				var open []hubclient.AddonRollout
				for _, r := range l.Rollouts {
					if !r.Finished {
						open = append(open, r)
					}
				}
				if len(open) == 0 {
					return nil
				}
				fmt.Fprintln(a.stdout, "\nROLLOUTS:")
				return a.print(nil, []string{"ADDON", "FROM", "TO", "DONE", "PENDING", "STATE"}, func() [][]string {
					var rows [][]string
					for _, r := range open {
						rows = append(rows, []string{r.Addon, r.From, r.To, dash(strings.Join(r.Done, ",")), dash(strings.Join(r.Pending, ",")), rolloutState(r)})
					}
					return rows
				})
			})
		},
	}
	status := &cobra.Command{
		Use: "status CLUSTER", Short: "each add-on in a cluster: enabled, desired and installed versions, health and why",
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput, ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				st, err := c.AddonsIn(ctx, cl.ID)
				if err != nil {
					return err
				}
				if err := a.print(st, []string{"ADDON", "ENABLED", "DESIRED", "INSTALLED", "HEALTH", "REASON", "CHECKED"}, func() [][]string {
					var rows [][]string
					for _, s := range st.Items {
						checked := "-"
						if !s.CheckedAt.IsZero() {
							checked = time.Since(s.CheckedAt).Truncate(time.Second).String() + " ago"
						}
						inst := s.Installed
						if inst == "" {
							inst = "-"
						}
						rows = append(rows, []string{s.Addon, fmt.Sprint(s.Enabled), s.Desired, inst, s.Health, s.Reason, checked})
					}
					return rows
				}); err != nil {
					return err
				}
				if !st.Connected && a.output == "table" {
					fmt.Fprintf(a.stdout, "\nECO is not connected to cluster %s (%s): the add-ons' health is unknown until it is.\n", cl.Name, cl.Status.State)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(list, status, a.addonEnableCmd(true), a.addonEnableCmd(false))

	setVersion := &cobra.Command{
		Use:   "set-version ADDON VERSION",
		Short: "pin an add-on's chart version and roll it out, one cluster at a time, stopping at the first failure",
		Long: `set-version pins ADDON's chart version (it must be in the App Catalog's
add-on repository) for every cluster, and rolls it out across the clusters
where the add-on is enabled, one at a time, each turning healthy before the
next; the first failure stops the rollout. ecoctl addons list shows where it
stands. The version is kept across hub restarts and upgrades until set again.`,
		Args: cobra.ExactArgs(2), PreRunE: a.checkOutput,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return a.completeAddons(cmd, args, toComplete)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				r, err := c.SetAddonVersion(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				if a.output != "table" {
					return a.print(r, nil, nil)
				}
				fmt.Fprintf(a.stdout, "add-on %s: rolling out %s (from %s); follow it with ecoctl addons list\n", r.Addon, r.To, r.From)
				return nil
			})
		},
	}
	resync := &cobra.Command{
		Use: "resync", Short: "reconcile every connected cluster's add-ons now (repairs drift)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				if err := c.ResyncAddons(ctx); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, "add-ons resync started; ecoctl addons status CLUSTER shows the result")
				return nil
			})
		},
	}
	cmd.AddCommand(setVersion, resync)
	return cmd
}

// addonEnableCmd is addons enable (on) or addons disable.
func (a *app) addonEnableCmd(on bool) *cobra.Command {
	verb := "enable"
	if !on {
		verb = "disable"
	}
	var all bool
	cmd := &cobra.Command{
		Use:   verb + " ADDON (CLUSTER | --all)",
		Short: verb + " an add-on in one cluster, or (--all) for every cluster; a cluster's own setting wins over --all's",
		Example: fmt.Sprintf(`  ecoctl addons %[1]s metrics-server prod
  ecoctl addons %[1]s logging --all`, verb),
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: a.completeAddons,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 2) {
				return errors.New("give a CLUSTER or --all")
			}
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				where := "every cluster"
				id := ""
				if !all {
					cl, err := c.FindCluster(ctx, args[1])
					if err != nil {
						return err
					}
					id, where = cl.ID, "cluster "+cl.Name
				}
				if err := c.EnableAddon(ctx, args[0], id, on); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "add-on %s %sd in %s; the hub reconciles it now (ecoctl addons status CLUSTER)\n", args[0], verb, where)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, verb+" it for every cluster")
	return cmd
}
