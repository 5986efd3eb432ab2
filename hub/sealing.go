package hub

import (
	"github.com/eco-project/eco/seal"
	"github.com/prometheus/client_golang/prometheus"
)

// Secrets at rest. Hub features that must keep a secret they will use
// again — a chart repository's password, a cloud account's credentials —
// seal it with the hub's Sealer (package seal): AES-256-GCM under a key
// derived from the hub's secret key for the purpose. A value sealed under
// a previous secret key (Config.PreviousSecretKeys) still opens, so
// rotating the hub's key loses nothing.

// ErrUnseal is returned by Unseal for bytes that no key of the hub opens:
// tampered, sealed for another purpose, or by a key the hub no longer has.
var ErrUnseal = seal.ErrUnseal

// Seal encrypts plaintext for purpose (e.g. "catalog/repository") with
// the hub's current secret key. The purpose is bound to the result: it
// opens only for the same purpose.
func (h *Hub) Seal(purpose string, plaintext []byte) ([]byte, error) {
	return h.sealer.Seal(purpose, plaintext, nil)
}

// Unseal opens what Seal sealed for purpose, with the current secret key
// or a previous one.
func (h *Hub) Unseal(purpose string, sealed []byte) ([]byte, error) {
	p, _, err := h.sealer.Open(purpose, sealed, nil)
	return p, err
}

// Sealer is the hub's sealer of secrets at rest, for hub features that
// bind a sealed value to more than its purpose (associated data) or
// reseal values a previous key opened.
func (h *Hub) Sealer() *seal.Sealer { return h.sealer }

// Registerer is the hub's Prometheus registry, for hub features' metrics:
// they are served with the hub's at /metrics.
func (h *Hub) Registerer() prometheus.Registerer { return h.registry }
