package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Protocol version spoken by this package, "MAJOR.MINOR" (spec.md,
// "Versioning"). Peers with the same major version interoperate; a minor
// version only adds optional fields or message types, which older peers
// ignore.
const (
	ProtocolMajor   = 2
	ProtocolMinor   = 1
	ProtocolVersion = "2.1"
)

// CapabilityCredential is the capability of an agent that takes a new
// credential over the control stream (the credential message, spec.md
// section 5, protocol 2.1): the hub sends credential messages only to
// agents whose Hello names it.
const CapabilityCredential = "credential-rotation"

// MaxCredentialLen bounds the token and error of a credential message.
const MaxCredentialLen = 256

// Limits of the control channel.
const (
	// DefaultMaxControlMessage is the default limit of one control frame
	// body. A frame announcing more is a protocol error; the receiver never
	// allocates the announced size.
	DefaultMaxControlMessage = 64 << 10
	// maxFieldLen bounds each string field of Hello and Status.
	maxFieldLen = 1024
	// frameHeaderLen is the 4-byte big-endian length prefix.
	frameHeaderLen = 4
)

// Control message types (the "type" field of every control message).
const (
	msgPing    = "ping"
	msgPong    = "pong"
	msgStatus  = "status"
	msgGoodbye = "goodbye"
	// msgCredential (hub → agent) hands the agent a new credential;
	// msgCredentialAck (agent → hub) answers it, once the agent has kept
	// it, with the credential itself (or why it could not keep it).
	msgCredential    = "credential"
	msgCredentialAck = "credentialAck"
)

// Credential is a new agent credential the hub hands a connected agent
// (Server.SendCredential), and the agent's acknowledgement of it
// (ServerConfig.CredentialAck, ClientConfig.OnCredential).
type Credential struct {
	// Generation is the credential's generation, > 0.
	Generation int64 `json:"generation"`
	// Token is the credential. In an acknowledgement it is the credential
	// the agent now holds; empty if it failed.
	Token string `json:"token,omitempty"`
	// Error, in an acknowledgement, says why the agent could not keep the
	// credential.
	Error string `json:"error,omitempty"`
}

// String never shows the token.
func (c Credential) String() string {
	return fmt.Sprintf("credential generation %d", c.Generation)
}

// Hello is the agent's half of the handshake, sent in the headers of the
// upgrade request (spec.md section 5). The hub passes it to
// ServerConfig.Admit and reports it in events and SessionInfo.
type Hello struct {
	// ProtocolVersion is "MAJOR.MINOR". Dial fills it in.
	ProtocolVersion string `json:"protocolVersion"`
	// AgentVersion is the agent's build version, free form.
	AgentVersion string `json:"agentVersion,omitempty"`
	// KubernetesVersion is the managed cluster's API server version.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Fingerprint identifies the cluster the agent runs in (eco uses the
	// kube-system namespace UID) so the hub can pin it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Capabilities names optional features the agent supports: at most
	// 64 tokens without commas or spaces.
	Capabilities []string `json:"capabilities,omitempty"`
	// IdentityToken proves which cluster the agent runs in (eco: a
	// ServiceAccount token with the hub's URL as audience): at most
	// MaxIdentityTokenLen bytes of base64url and dots. The Server passes it
	// to Admit and Prove only: events and SessionInfo never carry it.
	IdentityToken string `json:"-"`
}

// State is an agent's self-reported condition.
type State string

// Well-known agent states; others are passed through as they come.
const (
	// StateReady: the agent reaches its API server and is allowed to.
	StateReady State = "Ready"
	// StateFailing: the tunnel is up but the agent cannot reach its API
	// server, or is not allowed to.
	StateFailing State = "Failing"
)

// Status is an agent's report on its own condition.
type Status struct {
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// message is the JSON body of one control frame. Type selects which of the
// other fields are meaningful (spec.md, "Messages").
type message struct {
	Type   string  `json:"type"`
	Status *Status `json:"status,omitempty"`
	// Reason is set on goodbye.
	Reason string `json:"reason,omitempty"`
	// Seq is set on ping and pong.
	Seq uint64 `json:"seq,omitempty"`
	// Credential is set on credential and credentialAck.
	Credential *Credential `json:"credential,omitempty"`
}

// appendFrame appends the frame for m (length prefix and JSON body) to b.
func appendFrame(b []byte, m *message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return b, fmt.Errorf("encoding %s message: %w", m.Type, err)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// readFrame reads one control frame from r and returns its body. A frame
// longer than limit fails with ErrFrameTooLarge before anything beyond the
// prefix is read or allocated; an empty frame is a protocol error.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("%w: empty control frame", ErrProtocol)
	}
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// decodeMessage parses and validates one control message body.
func decodeMessage(body []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: decoding control message: %w", ErrProtocol, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *message) validate() error {
	bad := func(what string) error {
		return fmt.Errorf("%w: %s message: %s", ErrProtocol, m.Type, what)
	}
	switch m.Type {
	case "":
		return fmt.Errorf("%w: control message without type", ErrProtocol)
	case msgStatus:
		if m.Status == nil || m.Status.State == "" {
			return bad("missing state")
		}
		if len(m.Status.State) > maxFieldLen || len(m.Status.Reason) > maxFieldLen {
			return bad("field too long")
		}
	case msgGoodbye:
		if len(m.Reason) > maxFieldLen {
			return bad("reason too long")
		}
	case msgCredential, msgCredentialAck:
		c := m.Credential
		switch {
		case c == nil:
			return bad("missing credential")
		case c.Generation <= 0:
			return bad("generation must be positive")
		case len(c.Token) > MaxCredentialLen || len(c.Error) > maxFieldLen:
			return bad("field too long")
		case m.Type == msgCredential && c.Token == "":
			return bad("missing token")
		case m.Type == msgCredentialAck && (c.Token == "") == (c.Error == ""):
			return bad("exactly one of token and error")
		}
	}
	// ping and pong carry only seq; unknown types are ignored by the
	// receiver (spec.md, "Versioning").
	return nil
}

// parseVersion parses "MAJOR.MINOR".
func parseVersion(v string) (major, minor int, err error) {
	maj, min, ok := strings.Cut(v, ".")
	if !ok {
		return 0, 0, fmt.Errorf("protocol version %q is not MAJOR.MINOR", v)
	}
	major, err1 := strconv.Atoi(maj)
	minor, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || major < 0 || minor < 0 || len(v) > 16 {
		return 0, 0, fmt.Errorf("protocol version %q is not MAJOR.MINOR", v)
	}
	return major, minor, nil
}

// checkVersion accepts any version with our major number.
func checkVersion(v string) error {
	major, _, err := parseVersion(v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedVersion, err)
	}
	if major != ProtocolMajor {
		return fmt.Errorf("%w: peer speaks %s, this side speaks %d.x", ErrUnsupportedVersion, v, ProtocolMajor)
	}
	return nil
}
