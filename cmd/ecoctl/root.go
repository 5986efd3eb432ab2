package main

import (
	"io"

	"github.com/spf13/cobra"
)

// newRoot returns ecoctl's command tree.
func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "ecoctl",
		Short:         "ecoctl talks to an eco hub",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root
}
