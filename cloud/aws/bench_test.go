package aws_test

import (
	"fmt"
	"testing"

	"github.com/eco-project/eco/cloud/aws/awsfake"
)

// BenchmarkHealth100 polls the health of 100 EKS clusters of one region,
// each with one node group: EKS's list carries names only, so every
// cluster costs a DescribeCluster, a ListNodegroups and a
// DescribeNodegroup.
func BenchmarkHealth100(b *testing.B) {
	f := awsfake.New()
	defer f.Close()
	f.AddKey("AKIDECO", "s3cret")
	r := &rig{fake: f}
	var cs []awsfake.Cluster
	var refs []string
	for i := range 100 {
		cs = append(cs, awsfake.Cluster{Name: fmt.Sprintf("c%03d", i), Status: "ACTIVE", Groups: []awsfake.Nodegroup{{Name: "ng", Status: "ACTIVE"}}})
		refs = append(refs, f.ARN("eu-west-1", fmt.Sprintf("c%03d", i)))
	}
	f.SetClusters("eu-west-1", cs...)
	r.p, r.acct = newProvider(f)
	before := f.Requests("eu-west-1")
	for b.Loop() {
		hs, err := r.p.Health(b.Context(), r.acct, "eu-west-1", refs)
		if err != nil || len(hs) != 100 {
			b.Fatalf("%d, %v", len(hs), err)
		}
	}
	b.ReportMetric(float64(f.Requests("eu-west-1")-before)/float64(b.N), "requests/op")
}
