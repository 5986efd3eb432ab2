package tunnel

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSendCredential: the hub hands a new credential to an agent that
// announced CapabilityCredential; the agent keeps it and acknowledges with
// it, or with why it could not; an agent without the capability is never
// sent one.
func TestSendCredential(t *testing.T) {
	acks := make(chan Credential, 4)
	h := newHarness(t, harnessOpts{server: func(c *ServerConfig) {
		c.CredentialAck = func(clusterID string, _ uint64, ack Credential) {
			if clusterID == "c1" {
				acks <- ack
			}
		}
	}})
	kept := make(chan Credential, 4)
	fail := make(chan error, 1)
	h.dial("c1", func(c *ClientConfig) {
		c.Hello.Capabilities = []string{"other", CapabilityCredential}
		c.OnCredential = func(ctx context.Context, cred Credential) error {
			select {
			case err := <-fail:
				return err
			default:
			}
			kept <- cred
			return nil
		}
	})
	h.dial("old", nil) // an agent without the capability
	// Generous: under a full test run's load a connect can take seconds.
	h.waitEvents(EventConnected, 30*time.Second, "c1", "old")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	want := Credential{Generation: 2, Token: "ecoa_new"}
	if err := h.srv.SendCredential(ctx, "c1", want); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, kept); got != want {
		t.Fatalf("agent kept %+v, want %+v", got, want)
	}
	if got := recv(t, acks); got != want {
		t.Fatalf("hub got ack %+v, want %+v", got, want)
	}

	fail <- errors.New("secrets \"eco-agent\" is forbidden")
	if err := h.srv.SendCredential(ctx, "c1", Credential{Generation: 3, Token: "ecoa_newer"}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, acks); got.Generation != 3 || got.Token != "" || got.Error == "" {
		t.Fatalf("hub got ack %+v, want generation 3 with the error", got)
	}

	for _, tt := range []struct {
		name    string
		cluster string
		cred    Credential
		want    error
	}{
		{"agent without the capability", "old", want, ErrNoCapability},
		{"no session", "none", want, ErrNoSession},
		{"generation 0", "c1", Credential{Token: "x"}, ErrProtocol},
		{"no token", "c1", Credential{Generation: 4}, ErrProtocol},
	} {
		if err := h.srv.SendCredential(ctx, tt.cluster, tt.cred); !errors.Is(err, tt.want) {
			t.Errorf("%s: SendCredential = %v, want %v", tt.name, err, tt.want)
		}
	}
	if len(h.srv.Sessions()) != 2 {
		t.Fatalf("sessions after the credential exchange: %d, want 2 (both live)", len(h.srv.Sessions()))
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}
