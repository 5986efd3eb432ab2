package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/tunnel"
)

// keepCredential is the tunnel's OnCredential: the hub rotated the agent's
// credential. The agent writes it into its install Secret (so a restarted
// pod has it; its Role allows that one Secret only), then uses it for
// every later connect. The live session goes on: no request is
// interrupted. If the Secret cannot be written the agent keeps its old
// credential and the acknowledgement tells the hub why.
func (a *Agent) keepCredential(ctx context.Context, c tunnel.Credential) error {
	if err := install.CheckTokenFormat(c.Token); err != nil {
		return fmt.Errorf("the new credential is malformed: %w", err)
	}
	path := "/api/v1/namespaces/" + url.PathEscape(a.cfg.Namespace) + "/secrets/" + url.PathEscape(a.cfg.SecretName)
	// A merge patch of the one key: the Secret's other keys, labels and
	// kubectl's last-applied annotation stay as they are.
	patch := map[string]any{"data": map[string][]byte{install.KeyToken: []byte(c.Token)}}
	if err := a.api.do(ctx, http.MethodPatch, path, nil, "application/merge-patch+json", patch, nil); err != nil {
		a.metrics.credentialRotations.WithLabelValues("error").Inc()
		return fmt.Errorf("writing the new credential into Secret %s/%s: %w", a.cfg.Namespace, a.cfg.SecretName, err)
	}
	a.mu.Lock()
	a.token = c.Token
	a.mu.Unlock()
	a.metrics.credentialRotations.WithLabelValues("ok").Inc()
	a.log.Info("the hub rotated the agent credential; stored it in the install Secret", "generation", c.Generation,
		"secret", a.cfg.Namespace+"/"+a.cfg.SecretName)
	return nil
}

// currentToken is the credential the next connect presents.
func (a *Agent) currentToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}
