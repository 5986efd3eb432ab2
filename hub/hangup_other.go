//go:build !linux

package hub

import (
	"errors"
	"net"
)

// hangups is Linux's epoll where it exists; elsewhere every pump reads
// its client connection itself.
type hangups struct{}

var errNoDescriptor = errors.New("hangups: not on this system")

func newHangups() (*hangups, error) { return nil, nil }

func (h *hangups) watch(net.Conn, func()) (func(), error) { return nil, errNoDescriptor }

func (h *hangups) close() {}
