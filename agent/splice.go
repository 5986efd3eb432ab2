package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// upgrade forwards a protocol upgrade request. It gets an API server
// connection of its own, since its response head must be read here: on a
// 101 Switching Protocols the stream and the connection are joined (splice);
// any other answer is passed on with Connection: close, so the hub does not
// send another request on a stream the Forwarder no longer reads as HTTP.
func (s *stream) upgrade(ctx context.Context, req *http.Request) {
	s.retire()
	be, err := s.dial(ctx)
	if err != nil {
		s.unreachable(ctx, req, err)
		return
	}
	close(be.done) // nothing copies from it until splice
	if err := s.f.writeRequest(be, req); err != nil {
		s.f.logger.Debug("writing an upgrade request to the API server", "path", req.URL.Path, "err", err)
		return
	}
	br := bufio.NewReader(be)
	for {
		head, code, err := readResponseHead(br)
		switch {
		case err != nil:
			s.unreachable(ctx, req, fmt.Errorf("reading the answer to an upgrade: %w", err))
			return
		case code == http.StatusSwitchingProtocols:
			s.splice(be, br, head)
			return
		case code >= 100 && code < 200: // an interim answer: another follows
			if _, err := s.conn.Write(head); err != nil {
				return
			}
		default:
			s.passFinal(br, head, req)
			return
		}
	}
}

// retire closes the stream's API server connection, if any, on purpose,
// and waits until copyResponses stopped reading it. The hub sends a
// request only after it read the previous response, so nothing is lost.
func (s *stream) retire() {
	s.mu.Lock()
	be := s.backend
	s.backend = nil
	if be != nil {
		be.retired = true
	}
	s.mu.Unlock()
	if be != nil {
		be.Close()
		<-be.done
	}
}

// passFinal passes on a final answer to an upgrade request (an error, a
// redirect), with Connection: close.
func (s *stream) passFinal(br *bufio.Reader, head []byte, req *http.Request) {
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(head), br)), req)
	if err != nil {
		s.f.logger.Debug("reading the answer to an upgrade", "path", req.URL.Path, "err", err)
		return
	}
	defer resp.Body.Close()
	resp.Header.Del("Connection")
	resp.Close = true
	bw := bufio.NewWriter(s.conn)
	err = resp.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		s.f.logger.Debug("passing on the answer to an upgrade", "path", req.URL.Path, "err", err)
	}
	closeWrite(s.conn)
}

// splice joins the stream and be after a 101 Switching Protocols: head and
// whatever either side's reader already holds go first, then bytes flow
// both ways as they come. When one side ends its writing half (EOF), the
// other side's writing half is ended too, and the stream ends once both
// directions have; an error in either direction ends both at once.
func (s *stream) splice(be *backendConn, br *bufio.Reader, head []byte) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		_, err := s.conn.Write(head)
		if err == nil {
			_, err = s.f.copy(s.conn, br)
		}
		s.ended(err, func() error { return closeWrite(s.conn) })
	})
	_, err := s.f.copy(be, s.br)
	s.ended(err, func() error { return closeWrite(be.Conn) })
}

// ended finishes one direction of a splice: on EOF it passes the half-close
// on, on an error it ends the stream.
func (s *stream) ended(err error, halfClose func() error) {
	if err == nil {
		err = halfClose()
	}
	if err != nil {
		if !s.isClosed() {
			s.f.logger.Debug("upgraded connection ended", "err", err)
		}
		s.close()
	}
}

// readResponseHead reads a response head, the status line and the header
// fields up to the blank line, unparsed, and returns it with the status
// code.
func readResponseHead(br *bufio.Reader) ([]byte, int, error) {
	var head []byte
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if len(head) > maxResponseHead {
			return nil, 0, fmt.Errorf("response head longer than %d bytes", maxResponseHead)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, err
		}
		if l := head[lineStart:]; lineStart > 0 && (string(l) == "\r\n" || string(l) == "\n") {
			break
		}
		lineStart = len(head)
	}
	// "HTTP/1.1 101 Switching Protocols"
	_, rest, ok := bytes.Cut(head, []byte(" "))
	if !ok || len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ' && rest[3] != '\r' && rest[3] != '\n') {
		return nil, 0, fmt.Errorf("malformed status line %q", firstLine(head))
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code < 100 {
		return nil, 0, fmt.Errorf("malformed status line %q", firstLine(head))
	}
	return head, code, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(bytes.TrimSpace(line))
}

// copy copies src to dst until src ends (then it returns a nil error, like
// io.Copy) or a read or write fails. Every read is written at once, so a
// watch event leaves as soon as it arrives. Reads wait in a small pooled
// buffer; once a read fills it, they go through a big one while data
// streams in, handed back as soon as a read returns less than the small
// buffer holds, so that an idle or trickling connection (a quiet watch)
// holds 4 KiB, not 64.
func (f *Forwarder) copy(dst io.Writer, src io.Reader) (int64, error) {
	small := f.small.Get().(*[]byte)
	defer f.small.Put(small)
	var big *[]byte
	defer func() {
		if big != nil {
			f.big.Put(big)
		}
	}()
	buf := *small
	var written int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr == nil && w < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return written, nil
			}
			return written, err
		}
		switch {
		case big == nil && n == len(buf):
			big = f.big.Get().(*[]byte)
			buf = *big
		case big != nil && n < smallCopyBuf:
			f.big.Put(big)
			big, buf = nil, *small
		}
	}
}
