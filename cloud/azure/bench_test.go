package azure_test

import (
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v6"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/azure"
	"github.com/eco-project/eco/cloud/azure/azurefake"
)

// BenchmarkHealth1000 polls the health of 1,000 AKS clusters of one
// subscription: one list call (and one token request) per poll.
func BenchmarkHealth1000(b *testing.B) {
	f := azurefake.New()
	defer f.Close()
	f.AddSecret("t", "c", "s", sub)
	var mcs []*armcontainerservice.ManagedCluster
	var refs []string
	for i := range 1000 {
		id := azurefake.ResourceID(sub, "rg", fmt.Sprintf("c%04d", i))
		mcs = append(mcs, mc(id, fmt.Sprintf("c%04d", i), "westeurope", "Succeeded", armcontainerservice.CodeRunning, pool("p", "Succeeded")))
		refs = append(refs, id)
	}
	f.SetClusters(sub, mcs...)
	p := azure.New(azure.Config{Cloud: f.Cloud(), Transport: f.Client(), Retry: policy.RetryOptions{MaxRetries: -1}})
	a := cloud.Account{Provider: "aks", Scopes: []string{sub}, Credentials: cloud.Credentials{TenantID: "t", ClientID: "c", ClientSecret: "s"}}
	before := f.Calls(sub)
	for b.Loop() {
		hs, err := p.Health(b.Context(), a, sub, refs)
		if err != nil || len(hs) != 1000 {
			b.Fatalf("%d, %v", len(hs), err)
		}
	}
	b.ReportMetric(float64(f.Calls(sub)-before)/float64(b.N), "list-calls/op")
}
