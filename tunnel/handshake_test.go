package tunnel

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHelloHeaders(t *testing.T) {
	full := Hello{ProtocolVersion: "2.0", AgentVersion: "v0.4.0", KubernetesVersion: "v1.34.4+k3s1",
		Fingerprint: "7b1f6c1e-0d5e-4f1b-9c39-3d7a0b8e2f11", Capabilities: []string{"exec", "logs"}}
	for _, tc := range []struct {
		name  string
		hello Hello
		want  error // nil: round-trips
	}{
		{"full", full, nil},
		{"only the version", Hello{ProtocolVersion: "2.0"}, nil},
		{"no version", Hello{}, ErrUnsupportedVersion},
		{"version not MAJOR.MINOR", Hello{ProtocolVersion: "two"}, ErrUnsupportedVersion},
		{"fingerprint too long", Hello{ProtocolVersion: "2.0", Fingerprint: strings.Repeat("f", maxFieldLen+1)}, ErrBadHello},
		{"newline in a field", Hello{ProtocolVersion: "2.0", AgentVersion: "v1\r\nX-Evil: 1"}, ErrBadHello},
		{"non-ASCII field", Hello{ProtocolVersion: "2.0", KubernetesVersion: "v1.34–rc"}, ErrBadHello},
		{"comma in a capability", Hello{ProtocolVersion: "2.0", Capabilities: []string{"a,b"}}, ErrBadHello},
		{"empty capability", Hello{ProtocolVersion: "2.0", Capabilities: []string{""}}, ErrBadHello},
		{"too many capabilities", Hello{ProtocolVersion: "2.0", Capabilities: make([]string, maxCapabilities+1)}, ErrBadHello},
		{"identity token", Hello{ProtocolVersion: "2.0", IdentityToken: "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl-_"}, nil},
		{"identity token of the maximum size", Hello{ProtocolVersion: "2.0", IdentityToken: strings.Repeat("a", MaxIdentityTokenLen)}, nil},
		{"identity token too long", Hello{ProtocolVersion: "2.0", IdentityToken: strings.Repeat("a", MaxIdentityTokenLen+1)}, ErrBadHello},
		{"identity token with a space", Hello{ProtocolVersion: "2.0", IdentityToken: "a.b c.d"}, ErrBadHello},
		{"identity token with a header smuggled in", Hello{ProtocolVersion: "2.0", IdentityToken: "a.b.c\r\nX-Eco-Cluster-Id: other"}, ErrBadHello},
		{"identity token with base64 padding", Hello{ProtocolVersion: "2.0", IdentityToken: "a.b.c=="}, ErrBadHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateHello(&tc.hello)
			if !errors.Is(err, tc.want) {
				t.Fatalf("validateHello: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			hdr := http.Header{}
			setHelloHeaders(hdr, &tc.hello)
			got, err := helloFromHeaders(hdr)
			if err != nil || !reflect.DeepEqual(got, tc.hello) {
				t.Fatalf("round trip: %+v, %v; want %+v", got, err, tc.hello)
			}
		})
	}
	full.IdentityToken = "x.y.z"
	for _, k := range []string{HeaderAgentProtocol, HeaderAgentVersion, HeaderKubernetesVersion, HeaderFingerprint, HeaderCapabilities, HeaderIdentityToken} {
		t.Run("repeated "+k, func(t *testing.T) {
			hdr := http.Header{}
			setHelloHeaders(hdr, &full)
			hdr.Add(k, "2.0")
			if _, err := helloFromHeaders(hdr); !errors.Is(err, ErrBadHello) {
				t.Fatalf("helloFromHeaders: %v, want ErrBadHello", err)
			}
		})
	}
}

func TestAcceptHeaders(t *testing.T) {
	want := acceptInfo{protocolVersion: "2.3", sessionID: 17, heartbeatInterval: 10 * time.Second, heartbeatTimeout: 30 * time.Second}
	hdr := http.Header{}
	want.setHeaders(hdr)
	if got, err := acceptFromHeaders(hdr); err != nil || got != want {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, want)
	}
	for _, tc := range []struct {
		name       string
		key, value string
		want       error
	}{
		{"not an eco hub", HeaderAgentProtocol, "", ErrProtocol},
		{"another major", HeaderAgentProtocol, "3.0", ErrUnsupportedVersion},
		{"no session ID", HeaderSessionID, "", ErrProtocol},
		{"negative session ID", HeaderSessionID, "-1", ErrProtocol},
		{"zero heartbeat", HeaderHeartbeatInterval, "0", ErrProtocol},
		{"heartbeat not a number", HeaderHeartbeatTimeout, "30s", ErrProtocol},
		{"heartbeat over a day", HeaderHeartbeatTimeout, "86400001", ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hdr.Clone()
			h.Set(tc.key, tc.value)
			if _, err := acceptFromHeaders(h); !errors.Is(err, tc.want) {
				t.Fatalf("acceptFromHeaders: %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzHelloFromHeaders feeds arbitrary header values to the hub's reading
// of a Hello: an accepted Hello must be within the limits and survive a
// round trip through the agent's writing of it.
func FuzzHelloFromHeaders(f *testing.F) {
	f.Add("2.0", "v0.4.0", "v1.34.4", "7b1f6c1e", "exec,logs", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln")
	f.Add("2.0", "", "", "", "", "")
	f.Add("2.1", "a\x00", "v1", "f p", ",,", "a.b.c==")
	f.Fuzz(func(t *testing.T, proto, agent, kube, fp, caps, token string) {
		hdr := http.Header{}
		for k, v := range map[string]string{HeaderAgentProtocol: proto, HeaderAgentVersion: agent,
			HeaderKubernetesVersion: kube, HeaderFingerprint: fp, HeaderCapabilities: caps, HeaderIdentityToken: token} {
			if v != "" {
				hdr[k] = []string{v}
			}
		}
		h, err := helloFromHeaders(hdr)
		if err != nil {
			return
		}
		if len(h.IdentityToken) > MaxIdentityTokenLen || strings.ContainsAny(h.IdentityToken, " \r\n=,") {
			t.Fatalf("accepted identity token %q", h.IdentityToken)
		}
		for _, v := range []string{h.AgentVersion, h.KubernetesVersion, h.Fingerprint} {
			if len(v) > maxFieldLen || strings.ContainsAny(v, "\r\n") {
				t.Fatalf("accepted field %q", v)
			}
		}
		out := http.Header{}
		setHelloHeaders(out, &h)
		again, err := helloFromHeaders(out)
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("round trip of %+v: %+v, %v", h, again, err)
		}
	})
}
