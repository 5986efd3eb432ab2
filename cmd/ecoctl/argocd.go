package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hubclient"
)

// Argo CD: a cluster's registration in the hub's Argo CD instances and the
// Applications deployed to it.

func (a *app) argocdCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "argocd CLUSTER",
		Short: "show a cluster in Argo CD: its registration in each instance, and the Applications deployed to it",
		Long: `argocd shows CLUSTER as the hub's Argo CD instances see it (docs/argocd.md):
its registration in each (the cluster Secret, since when, the last
reconcile and its error) and the Applications whose destination it is,
with their sync and health status.

A hub runs with Argo CD instances when eco-hub is given --argocd-*; on a
hub without one, this says so.`,
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput, ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				v, err := c.ArgoCD(ctx, cl.ID)
				if hubclient.IsStatus(err, http.StatusNotFound) {
					// The cluster was found: the hub answers NotConfigured (or, before it did, did not serve the route).
					return fmt.Errorf("this hub has no Argo CD instance: it registers no cluster into Argo CD (eco-hub --argocd-kubeconfig, --argocd-cluster or --argocd-config; docs/argocd.md): %w", err)
				}
				if err != nil {
					return err
				}
				if a.output != "table" {
					return a.print(v, nil, nil)
				}
				return a.printArgoCD(cl, v)
			})
		},
	}
}

func (a *app) printArgoCD(cl hub.ClusterJSON, v hubclient.ArgoCDView) error {
	w := a.stdout
	if !v.Connected {
		fmt.Fprintf(w, "ECO is not connected to cluster %s (%s", cl.Name, v.State)
		if v.Reason != "" {
			fmt.Fprintf(w, ": %s", v.Reason)
		}
		fmt.Fprintln(w, "): Argo CD cannot reach it until it is; it stays registered.")
		fmt.Fprintln(w)
	}
	if len(v.Registrations) == 0 {
		fmt.Fprintf(w, "cluster %s is not registered in any Argo CD instance of this hub\n", cl.Name)
	} else {
		when := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.Format(time.RFC3339)
		}
		if err := a.print(nil, []string{"INSTANCE", "REGISTERED", "SECRET", "SINCE", "LAST RECONCILE", "ERROR"}, func() [][]string {
			var rows [][]string
			for _, r := range v.Registrations {
				reg := fmt.Sprint(r.Registered)
				if !r.Registered && r.Reason != "" {
					reg = "false: " + r.Reason
				}
				e := r.Error
				if e == "" {
					e = "-"
				}
				rows = append(rows, []string{r.Instance, reg, r.Namespace + "/" + r.Secret, when(r.Since), when(r.LastReconcile), e})
			}
			return rows
		}); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(v.Applications) == 0 {
		fmt.Fprintln(w, "no Argo CD Application is deployed to it")
	} else if err := a.print(nil, []string{"INSTANCE", "APPLICATION", "PROJECT", "SYNC", "HEALTH"}, func() [][]string {
		var rows [][]string
		for _, app := range v.Applications {
			rows = append(rows, []string{app.Instance, app.Namespace + "/" + app.Name, app.Project, dash(app.Sync), dash(app.Health)})
		}
		return rows
	}); err != nil {
		return err
	}
	names := make([]string, 0, len(v.Errors))
	for n := range v.Errors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "instance %s: its Applications could not be read: %s\n", n, v.Errors[n])
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
