package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"sync"
	"time"
)

// ticketKeyPeriod is how long one derived session ticket key encrypts
// tickets; the key of the period before is still accepted, so a ticket
// resumes for one to two periods after it was issued. Seven days is the
// most TLS 1.3 itself allows a ticket (RFC 8446 section 4.6.1; crypto/tls
// enforces it on both ends), so the rotation never cuts a ticket short:
// any agent whose session began less than a week before a hub restart
// resumes.
const ticketKeyPeriod = 7 * 24 * time.Hour

// TLSConfig returns a copy of base for the hub's HTTPS server (the one
// agents' wss:// tunnels reach) whose TLS 1.3 session tickets survive a
// hub restart, so that a reconnect storm after an upgrade or crash is
// mostly resumed handshakes: no certificate signature on the hub, no chain
// or signature verification on the agents.
//
// crypto/tls encrypts tickets with random keys per process, which die with
// it. Here the ticket key of each period of ticketKeyPeriod is instead
// HMAC-SHA256 of the hub's secret key (Config.SecretKey) and the period's
// number, by the hub's clock (Config.Now): a restarted hub with the same
// secret key decrypts the tickets its predecessor issued. The current
// period's key encrypts, the previous one's still decrypts, older ones do
// not. There is no timer: the keys are checked against the clock when a
// ticket is made or read, so no goroutine runs for them and the copies
// http.Server makes of the config (ServeTLS clones it) rotate too.
//
// Forward secrecy stays: Go offers and accepts TLS 1.3 resumption only in
// psk_dhe_ke mode, so each resumed session also runs a fresh (EC)DHE key
// exchange, and a leaked secret key does not decrypt recorded traffic.
// It does let its holder decrypt a ticket an agent sends and so resume as
// the hub toward that agent for the ticket's life (at most 7 days): the
// secret key, which already mints agent credentials, stays as secret as
// the TLS private key. TLS 1.2 resumption has no fresh key exchange and
// its tickets carry the session's master secret, so TLS 1.2 tickets (other
// clients; agents speak 1.3) keep crypto/tls's random per-process keys.
//
// It sets WrapSession and UnwrapSession, replacing any base had.
func (h *Hub) TLSConfig(base *tls.Config) *tls.Config {
	return newTicketKeys(h.cfg.SecretKey, h.cfg.Now, ticketKeyPeriod).config(base)
}

// ticketKeys makes and reads session tickets with keys derived from a
// secret per period of time.
type ticketKeys struct {
	secret []byte
	now    func() time.Time
	period time.Duration

	// derived holds the derived keys, set by SetSessionTicketKeys; random
	// holds crypto/tls's own random, self-rotating keys for TLS 1.2. Their
	// EncryptTicket and DecryptTicket do the work; neither config serves a
	// handshake.
	derived *tls.Config
	random  *tls.Config

	mu     sync.Mutex
	bucket int64 // the period whose key derived encrypts with
	set    bool  // derived has keys
}

func newTicketKeys(secret []byte, now func() time.Time, period time.Duration) *ticketKeys {
	if now == nil {
		now = time.Now
	}
	return &ticketKeys{
		secret:  secret,
		now:     now,
		period:  period,
		derived: &tls.Config{},
		random:  &tls.Config{},
	}
}

// config returns a copy of base that makes and reads tickets with k.
func (k *ticketKeys) config(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.WrapSession = k.wrap
	c.UnwrapSession = k.unwrap
	return c
}

func (k *ticketKeys) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	if cs.Version != tls.VersionTLS13 {
		return k.random.EncryptTicket(cs, ss)
	}
	k.rotate()
	return k.derived.EncryptTicket(cs, ss)
}

func (k *ticketKeys) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	if cs.Version != tls.VersionTLS13 {
		return k.random.DecryptTicket(identity, cs)
	}
	k.rotate()
	return k.derived.DecryptTicket(identity, cs)
}

// rotate gives derived the keys of the current period and the previous
// one, if it does not have them yet.
func (k *ticketKeys) rotate() {
	b := k.now().Unix() / int64(k.period/time.Second)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set && b == k.bucket {
		return
	}
	k.derived.SetSessionTicketKeys([][32]byte{k.key(b), k.key(b - 1)})
	k.bucket, k.set = b, true
}

// key derives the ticket key of period b.
func (k *ticketKeys) key(b int64) [32]byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte("eco tls session ticket key\x00"))
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], uint64(k.period/time.Second))
	binary.BigEndian.PutUint64(n[8:], uint64(b))
	m.Write(n[:])
	var key [32]byte
	m.Sum(key[:0])
	return key
}
