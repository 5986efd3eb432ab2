package bench

import (
	"context"
	"fmt"
	"io"
)

// RealResults is the real-path table: kubectl and client-go against a
// local kube-apiserver, direct and through hub and agent.
type RealResults struct {
	Objects int                  `json:"objects"`
	Rows    []RealRow            `json:"rows"`
	Samples map[string][]float64 `json:"samples"`
}

// RealRow is one figure of the real path.
type RealRow struct {
	Figure  string  `json:"figure"`
	Direct  float64 `json:"direct"`
	ThruEco float64 `json:"eco"`
	Unit    string  `json:"unit"`
}

func (r *RealResults) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n| real path (local kube-apiserver, %d objects) | direct | through eco | ratio |\n", r.Objects)
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
	Quick bool
	Log   io.Writer
}

// RunReal is filled in below.
func RunReal(ctx context.Context, o RealOptions) (*RealResults, error) { return runReal(ctx, o) }
func runReal(ctx context.Context, o RealOptions) (*RealResults, error) {
	return nil, fmt.Errorf("not yet")
}
