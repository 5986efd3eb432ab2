package tunnel

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The handshake rides on the HTTP upgrade (spec.md, "Handshake"): the
// agent's Hello is in the request's headers and the hub's answer in the
// 101 response's, so a session is up after one round trip and no control
// message.
const (
	// HeaderAgentVersion carries Hello.AgentVersion.
	HeaderAgentVersion = "X-Eco-Agent-Version"
	// HeaderKubernetesVersion carries Hello.KubernetesVersion.
	HeaderKubernetesVersion = "X-Eco-Kubernetes-Version"
	// HeaderFingerprint carries Hello.Fingerprint.
	HeaderFingerprint = "X-Eco-Cluster-Fingerprint"
	// HeaderCapabilities carries Hello.Capabilities, comma-separated.
	HeaderCapabilities = "X-Eco-Capabilities"
	// HeaderIdentityToken carries Hello.IdentityToken.
	HeaderIdentityToken = "X-Eco-Identity-Token"

	// HeaderSessionID carries the hub's session ID in the 101 response.
	HeaderSessionID = "X-Eco-Session-Id"
	// HeaderHeartbeatInterval carries the hub's ping interval in
	// milliseconds in the 101 response.
	HeaderHeartbeatInterval = "X-Eco-Heartbeat-Interval-Ms"
	// HeaderHeartbeatTimeout carries, in milliseconds, the silence after
	// which either side declares the session dead.
	HeaderHeartbeatTimeout = "X-Eco-Heartbeat-Timeout-Ms"

	// maxCapabilities bounds Hello.Capabilities.
	maxCapabilities = 64
	// MaxIdentityTokenLen bounds Hello.IdentityToken, in bytes. A
	// Kubernetes projected ServiceAccount token is about 1 KiB.
	MaxIdentityTokenLen = 8 << 10
)

// validateHello checks the limits of spec.md section 5 and that every
// field can travel in a header: at most maxFieldLen bytes of printable
// ASCII, capabilities without commas or spaces.
func validateHello(h *Hello) error {
	if _, _, err := parseVersion(h.ProtocolVersion); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedVersion, err)
	}
	for _, f := range []struct{ name, v string }{
		{"agent version", h.AgentVersion},
		{"Kubernetes version", h.KubernetesVersion},
		{"fingerprint", h.Fingerprint},
	} {
		if err := checkHeaderField(f.name, f.v, false); err != nil {
			return err
		}
	}
	if err := checkIdentityToken(h.IdentityToken); err != nil {
		return err
	}
	if len(h.Capabilities) > maxCapabilities {
		return fmt.Errorf("%w: %d capabilities, at most %d", ErrBadHello, len(h.Capabilities), maxCapabilities)
	}
	for _, c := range h.Capabilities {
		if c == "" {
			return fmt.Errorf("%w: empty capability", ErrBadHello)
		}
		if err := checkHeaderField("capability", c, true); err != nil {
			return err
		}
	}
	return nil
}

func checkHeaderField(name, v string, token bool) error {
	if len(v) > maxFieldLen {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrBadHello, name, len(v), maxFieldLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || (token && (c == ',' || c == ' ')) {
			return fmt.Errorf("%w: %s %q has a character a header cannot carry", ErrBadHello, name, v)
		}
	}
	return nil
}

// checkIdentityToken checks the identity token's limits: at most
// MaxIdentityTokenLen bytes of base64url and dots (a compact JWS). What it
// says is the hub's business.
func checkIdentityToken(v string) error {
	if len(v) > MaxIdentityTokenLen {
		return fmt.Errorf("%w: identity token is %d bytes, at most %d", ErrBadHello, len(v), MaxIdentityTokenLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: identity token has a character other than base64url and '.' at byte %d", ErrBadHello, i)
		}
	}
	return nil
}

// setHelloHeaders puts h into an upgrade request's headers.
func setHelloHeaders(hdr http.Header, h *Hello) {
	hdr.Set(HeaderAgentProtocol, h.ProtocolVersion)
	for _, f := range []struct{ key, v string }{
		{HeaderAgentVersion, h.AgentVersion},
		{HeaderKubernetesVersion, h.KubernetesVersion},
		{HeaderFingerprint, h.Fingerprint},
		{HeaderCapabilities, strings.Join(h.Capabilities, ",")},
		{HeaderIdentityToken, h.IdentityToken},
	} {
		if f.v != "" {
			hdr.Set(f.key, f.v)
		}
	}
}

// helloFromHeaders reads and validates the Hello of an upgrade request.
func helloFromHeaders(hdr http.Header) (Hello, error) {
	h := Hello{
		ProtocolVersion:   hdr.Get(HeaderAgentProtocol),
		AgentVersion:      hdr.Get(HeaderAgentVersion),
		KubernetesVersion: hdr.Get(HeaderKubernetesVersion),
		Fingerprint:       hdr.Get(HeaderFingerprint),
		IdentityToken:     hdr.Get(HeaderIdentityToken),
	}
	if caps := hdr.Get(HeaderCapabilities); caps != "" {
		h.Capabilities = strings.Split(caps, ",")
	}
	// Each header of the hello may appear once.
	for _, k := range []string{HeaderAgentProtocol, HeaderAgentVersion, HeaderKubernetesVersion, HeaderFingerprint, HeaderCapabilities, HeaderIdentityToken} {
		if len(hdr[k]) > 1 {
			return h, fmt.Errorf("%w: %s repeated", ErrBadHello, k)
		}
	}
	return h, validateHello(&h)
}

// acceptInfo is the hub's answer in the 101 response.
type acceptInfo struct {
	protocolVersion   string
	sessionID         uint64
	heartbeatInterval time.Duration
	heartbeatTimeout  time.Duration
}

func (a acceptInfo) setHeaders(hdr http.Header) {
	hdr.Set(HeaderAgentProtocol, a.protocolVersion)
	hdr.Set(HeaderSessionID, strconv.FormatUint(a.sessionID, 10))
	hdr.Set(HeaderHeartbeatInterval, strconv.FormatInt(a.heartbeatInterval.Milliseconds(), 10))
	hdr.Set(HeaderHeartbeatTimeout, strconv.FormatInt(a.heartbeatTimeout.Milliseconds(), 10))
}

// acceptFromHeaders reads the hub's answer from a 101 response. A hub of
// another major version fails with ErrUnsupportedVersion, a response
// without the answer with ErrProtocol.
func acceptFromHeaders(hdr http.Header) (acceptInfo, error) {
	var a acceptInfo
	a.protocolVersion = hdr.Get(HeaderAgentProtocol)
	if a.protocolVersion == "" {
		return a, fmt.Errorf("%w: the hub's 101 response has no %s (not an eco %d.x hub?)", ErrProtocol, HeaderAgentProtocol, ProtocolMajor)
	}
	if err := checkVersion(a.protocolVersion); err != nil {
		return a, err
	}
	id, err := strconv.ParseUint(hdr.Get(HeaderSessionID), 10, 64)
	if err != nil {
		return a, fmt.Errorf("%w: the hub's %s: %w", ErrProtocol, HeaderSessionID, err)
	}
	a.sessionID = id
	for _, f := range []struct {
		key string
		d   *time.Duration
	}{
		{HeaderHeartbeatInterval, &a.heartbeatInterval},
		{HeaderHeartbeatTimeout, &a.heartbeatTimeout},
	} {
		ms, err := strconv.ParseInt(hdr.Get(f.key), 10, 64)
		if err != nil || ms <= 0 || ms > int64(24*time.Hour/time.Millisecond) {
			return a, fmt.Errorf("%w: the hub's %s is %q, want milliseconds > 0", ErrProtocol, f.key, hdr.Get(f.key))
		}
		*f.d = time.Duration(ms) * time.Millisecond
	}
	return a, nil
}
