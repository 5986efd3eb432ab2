package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hubclient"
)

// Cloud accounts (docs/cloud.md): discovery, import and one-click install
// of EKS, AKS and GKE clusters; hub admins with an unscoped token.

var accountHeader = []string{"ID", "NAME", "PROVIDER", "SCOPES", "CLUSTERS", "CREATED"}

func accountRows(as []cloud.AccountInfo) [][]string {
	var rows [][]string
	for _, ac := range as {
		rows = append(rows, []string{ac.ID, ac.Name, string(ac.Provider), strings.Join(ac.Scopes, ","), strconv.Itoa(ac.Clusters), ac.CreatedAt.Format(time.RFC3339)})
	}
	return rows
}

func (a *app) completeAccounts(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeWith(cmd, func(ctx context.Context, c *hubclient.Client) ([]string, error) {
		l, err := c.ListCloudAccounts(ctx)
		var out []string
		for _, ac := range l.Accounts {
			if strings.HasPrefix(ac.Name, toComplete) {
				out = append(out, ac.Name+"\t"+string(ac.Provider)+" "+ac.ID)
			}
		}
		return out, err
	})
}

// withAccount finds ACCOUNT by ID or name and calls f.
func (a *app) withAccount(cmd *cobra.Command, ref string, f func(context.Context, *hubclient.Client, cloud.AccountInfo) error) error {
	return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
		ac, err := c.FindCloudAccount(ctx, ref)
		if err != nil {
			return err
		}
		return f(ctx, c, ac)
	})
}

// cloudCredentials puts the secret read from --secret-file where
// provider's credentials keep it.
func cloudCredentials(provider, secret string, creds cloud.Credentials) (cloud.Credentials, error) {
	switch provider {
	case "eks":
		creds.SecretAccessKey = secret
	case "aks":
		if strings.Contains(secret, "-----BEGIN") {
			creds.ClientCertificate = secret
		} else {
			creds.ClientSecret = secret
		}
	case "gke":
		creds.ServiceAccountKey = secret
	default:
		return creds, fmt.Errorf("--provider %q: want eks, aks or gke", provider)
	}
	return creds, nil
}

func (a *app) cloudCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cloud",
		Short: "cloud accounts: discover, import and one-click install EKS, AKS and GKE clusters (hub admins)",
	}
	accounts := &cobra.Command{Use: "accounts", Aliases: []string{"account"}, Short: "list, add and remove cloud accounts (their credentials are never shown)"}
	list := &cobra.Command{
		Use: "list", Short: "list the cloud accounts and the providers this hub enables",
		Args: cobra.NoArgs, PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				l, err := c.ListCloudAccounts(ctx)
				if err != nil {
					return err
				}
				if err := a.print(l, accountHeader, func() [][]string { return accountRows(l.Accounts) }); err != nil || a.output != "table" {
					return err
				}
				enabled := "none (eco-hub --cloud-providers)"
				if len(l.Providers) > 0 {
					enabled = strings.Join(l.Providers, ", ")
				}
				fmt.Fprintf(a.stdout, "\nproviders this hub enables: %s\n", enabled)
				return nil
			})
		},
	}
	var req hubclient.CloudAccountRequest
	var secretFile string
	add := &cobra.Command{
		Use:   "add NAME --provider=eks|aks|gke --scope=SCOPE... --secret-file=FILE",
		Short: "add a cloud account; the hub checks its credentials with the cloud, then keeps them encrypted",
		Long: `add adds a cloud account. Its secret is read from --secret-file (- for
stdin), never from the command line, and never shown again:

  eks  the secret access key of --access-key-id (optionally assuming --role-arn
       with --external-id); --scope: the regions to look in
  aks  the client secret, or a PEM certificate with its unencrypted key, of the
       service principal --client-id in --tenant-id; --scope: the subscription ID
  gke  the service account's JSON key; --scope: the project ID

The hub checks the credentials with one read-only call to the cloud first.`,
		Example: `  ecoctl cloud accounts add prod-aws --provider=eks --scope=eu-west-1,us-east-1 --access-key-id=AKIA... --secret-file=aws.secret
  ecoctl cloud accounts add prod-gcp --provider=gke --scope=my-project --secret-file=key.json
  vault read -field=secret azure/sp | ecoctl cloud accounts add prod-az --provider=aks --scope=SUBSCRIPTION --tenant-id=T --client-id=C --secret-file=-`,
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if secretFile == "" {
				return errors.New("give --secret-file (- for stdin): the account's secret is never taken from the command line")
			}
			secret, err := a.readSecret("--secret-file", secretFile)
			if err != nil {
				return err
			}
			if req.Credentials, err = cloudCredentials(req.Provider, secret, req.Credentials); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *hubclient.Client) error {
				ac, err := c.AddCloudAccount(ctx, req)
				if err != nil {
					return fmt.Errorf("adding cloud account %s: %w", req.Name, err)
				}
				return a.print(ac, accountHeader, func() [][]string { return accountRows([]cloud.AccountInfo{ac}) })
			})
		},
	}
	add.Flags().StringVar(&req.Provider, "provider", "", "eks, aks or gke")
	add.Flags().StringSliceVar(&req.Scopes, "scope", nil, "EKS regions, or the AKS subscription ID, or the GCP project ID")
	add.Flags().StringVar(&secretFile, "secret-file", "", "`file` holding the account's secret (- for stdin)")
	add.Flags().StringVar(&req.Credentials.AccessKeyID, "access-key-id", "", "eks: the access key ID")
	add.Flags().StringVar(&req.Credentials.RoleARN, "role-arn", "", "eks: a role to assume with the access key")
	add.Flags().StringVar(&req.Credentials.ExternalID, "external-id", "", "eks: the external ID the role requires")
	add.Flags().StringVar(&req.Credentials.TenantID, "tenant-id", "", "aks: the service principal's tenant ID")
	add.Flags().StringVar(&req.Credentials.ClientID, "client-id", "", "aks: the service principal's client ID")
	_ = add.MarkFlagRequired("provider")
	_ = add.MarkFlagRequired("scope")
	_ = add.RegisterFlagCompletionFunc("provider", cobra.FixedCompletions([]string{"eks", "aks", "gke"}, cobra.ShellCompDirectiveNoFileComp))
	remove := &cobra.Command{
		Use: "remove ACCOUNT", Aliases: []string{"rm", "delete"},
		Short: "remove a cloud account (by name or ID); refused while clusters imported from it are on the hub",
		Args:  cobra.ExactArgs(1), ValidArgsFunction: a.completeAccounts,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAccount(cmd, args[0], func(ctx context.Context, c *hubclient.Client, ac cloud.AccountInfo) error {
				if err := c.RemoveCloudAccount(ctx, ac.ID); err != nil {
					if hubclient.IsStatus(err, http.StatusConflict) {
						return fmt.Errorf("cloud account %s still has clusters imported from it on the hub (delete them first: ecoctl clusters delete): %w", ac.Name, err)
					}
					return err
				}
				fmt.Fprintf(a.stdout, "cloud account %s (%s) removed\n", ac.Name, ac.ID)
				return nil
			})
		},
	}
	accounts.AddCommand(list, add, remove)

	var regions []string
	discover := &cobra.Command{
		Use:   "discover ACCOUNT [--region=R...]",
		Short: "list the clusters a cloud account sees, with their health and whether they can be imported",
		Args:  cobra.ExactArgs(1), PreRunE: a.checkOutput, ValidArgsFunction: a.completeAccounts,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAccount(cmd, args[0], func(ctx context.Context, c *hubclient.Client, ac cloud.AccountInfo) error {
				ds, err := c.DiscoverClusters(ctx, ac.ID, regions)
				if err != nil {
					return err
				}
				return a.print(ds, []string{"NAME", "SCOPE", "REGION", "VERSION", "HEALTH", "ENDPOINT", "IMPORT", "REF"}, func() [][]string {
					var rows [][]string
					for _, d := range ds {
						imp := "importable"
						switch {
						case d.ImportedAs != "":
							imp = "imported as " + d.ImportedAs
						case !d.Importable:
							imp = "no: " + d.NotImportable
						}
						endpoint := "public"
						if d.Private {
							endpoint = "private"
						}
						rows = append(rows, []string{d.Name, d.Scope, d.Region, d.Version, d.Health, endpoint, imp, d.Ref})
					}
					return rows
				})
			})
		},
	}
	discover.Flags().StringSliceVar(&regions, "region", nil, "only these of the account's regions (EKS), subscription (AKS) or project (GKE); default all")

	var name string
	imp := &cobra.Command{
		Use:   "import ACCOUNT CLUSTER-REF...",
		Short: "import clusters the account sees (by ref, name or SCOPE/NAME as discover shows them) into the hub",
		Long: `import imports clusters a cloud account sees into the hub in one step. Each
CLUSTER-REF is a cluster's ref (ARN, Azure resource ID or GKE self link),
its cloud name, or SCOPE/NAME when the name is in several scopes, as
ecoctl cloud discover shows them. Each succeeds or fails on its own; the
hub name is the cloud name (with -REGION when taken), or --name for one
cluster. Then install ECO: ecoctl cloud install CLUSTER, or for a private
API server ecoctl install CLUSTER --apply from inside its network.`,
		Args: cobra.MinimumNArgs(2), PreRunE: a.checkOutput, ValidArgsFunction: a.completeAccounts,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name != "" && len(args) != 2 {
				return errors.New("--name names one cluster")
			}
			return a.withAccount(cmd, args[0], func(ctx context.Context, c *hubclient.Client, ac cloud.AccountInfo) error {
				ds, err := c.DiscoverClusters(ctx, ac.ID, nil)
				if err != nil {
					return err
				}
				var items []cloud.ImportItem
				for _, ref := range args[1:] {
					d, err := pickDiscovered(ds, ref)
					if err != nil {
						return fmt.Errorf("cloud account %s: %w", ac.Name, err)
					}
					items = append(items, cloud.ImportItem{Scope: d.Scope, Ref: d.Ref, Name: name})
				}
				res, err := c.ImportCloudClusters(ctx, ac.ID, items)
				if err != nil {
					return err
				}
				if err := a.print(res, []string{"REF", "NAME", "CLUSTER ID", "RESULT"}, func() [][]string {
					var rows [][]string
					for _, r := range res {
						result := "imported"
						switch {
						case r.Error != "":
							result = "failed: " + r.Error
						case r.Private:
							result = "imported; private API server: apply its install YAML from inside its network (ecoctl install " + r.Name + ")"
						}
						rows = append(rows, []string{r.Ref, r.Name, r.ClusterID, result})
					}
					return rows
				}); err != nil {
					return err
				}
				failed := 0
				for _, r := range res {
					if r.Error != "" {
						failed++
					}
				}
				if failed > 0 {
					return fmt.Errorf("%d of %d imports failed", failed, len(res))
				}
				return nil
			})
		},
	}
	imp.Flags().StringVar(&name, "name", "", "the hub name of the one cluster imported (default: its cloud name)")

	install := &cobra.Command{
		Use:   "install CLUSTER",
		Short: "one-click install: the hub installs ECO into a cluster imported from a cloud account, with that account's credentials",
		Long: `install has the hub apply CLUSTER's install YAML itself, with credentials
its cloud account hands out as the cloud's own tooling does (an EKS access
entry and STS token, AKS's credential API, a GKE OAuth token). A cluster
with a private API server, or not imported from a cloud account, keeps the
copy-the-YAML flow: ecoctl install CLUSTER --apply.`,
		Args: cobra.ExactArgs(1), PreRunE: a.checkOutput, ValidArgsFunction: a.completeClusters,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCluster(cmd, args[0], func(ctx context.Context, c *hubclient.Client, cl hub.ClusterJSON) error {
				res, err := c.CloudInstall(ctx, cl.ID)
				if hubclient.IsStatus(err, http.StatusConflict) {
					return fmt.Errorf("no one-click install for cluster %s; apply its install YAML yourself, from a machine that reaches its API server: ecoctl install %s --apply: %w", cl.Name, cl.Name, err)
				}
				if err != nil {
					return err
				}
				if a.output != "table" {
					return a.print(res, nil, nil)
				}
				fmt.Fprintf(a.stdout, "ECO's install YAML applied to cluster %s by the hub (%d objects):\n", cl.Name, len(res.Applied))
				for _, o := range res.Applied {
					fmt.Fprintf(a.stdout, "  %s\n", o)
				}
				fmt.Fprintf(a.stdout, "watch its agent connect: ecoctl status %s --watch\n", cl.Name)
				return nil
			})
		},
	}
	cmd.AddCommand(accounts, discover, imp, install)
	return cmd
}

// pickDiscovered finds the discovered cluster ref names: its ref, its
// cloud name, or SCOPE/NAME.
func pickDiscovered(ds []cloud.Discovered, ref string) (cloud.Discovered, error) {
	var found []cloud.Discovered
	for _, d := range ds {
		if d.Ref == ref {
			return d, nil
		}
		if d.Name == ref || d.Scope+"/"+d.Name == ref {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return cloud.Discovered{}, fmt.Errorf("it sees no cluster %q (ecoctl cloud discover)", ref)
	case 1:
		return found[0], nil
	}
	var in []string
	for _, d := range found {
		in = append(in, d.Scope+"/"+d.Name)
	}
	return cloud.Discovered{}, fmt.Errorf("%d clusters are named %q: give one of %s", len(found), ref, strings.Join(in, ", "))
}
