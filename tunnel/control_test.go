package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func frame(body string) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(len(body))) // caller appends body
}

func TestReadFrame(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
		want  string
		err   error
	}{
		{"ok", append(frame(`{"type":"ping"}`), `{"type":"ping"}`...), `{"type":"ping"}`, nil},
		{"at limit", append(binary.BigEndian.AppendUint32(nil, 16), bytes.Repeat([]byte("a"), 16)...), strings.Repeat("a", 16), nil},
		{"over limit", binary.BigEndian.AppendUint32(nil, 17), "", ErrFrameTooLarge},
		{"4 GiB announced", []byte{0xff, 0xff, 0xff, 0xff}, "", ErrFrameTooLarge},
		{"empty frame", []byte{0, 0, 0, 0}, "", ErrProtocol},
		{"short prefix", []byte{0, 0}, "", io.ErrUnexpectedEOF},
		{"nothing", nil, "", io.EOF},
		{"short body", append(binary.BigEndian.AppendUint32(nil, 10), "abc"...), "", io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readFrame(bytes.NewReader(tc.input), 16)
			if !errors.Is(err, tc.err) || string(got) != tc.want {
				t.Fatalf("readFrame = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestDecodeMessage(t *testing.T) {
	long := strings.Repeat("x", maxFieldLen+1)
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"ping", `{"type":"ping","seq":7}`, true},
		{"ping from a newer minor", `{"type":"ping","seq":7,"future":true}`, true},
		{"hello (not a control message since the handshake moved to the upgrade) is passed on", `{"type":"hello","hello":{}}`, true},
		{"pong", `{"type":"pong","seq":7}`, true},
		{"status", `{"type":"status","status":{"state":"Failing","reason":"dial tcp: refused"}}`, true},
		{"status without state", `{"type":"status","status":{}}`, false},
		{"goodbye", `{"type":"goodbye","reason":"namespace deleted"}`, true},
		{"goodbye long reason", `{"type":"goodbye","reason":"` + long + `"}`, false},
		{"unknown type is passed on", `{"type":"telemetry","x":1}`, true},
		{"credential", `{"type":"credential","credential":{"generation":2,"token":"ecoa_x"}}`, true},
		{"credential without token", `{"type":"credential","credential":{"generation":2}}`, false},
		{"credential generation 0", `{"type":"credential","credential":{"generation":0,"token":"ecoa_x"}}`, false},
		{"credential missing", `{"type":"credential"}`, false},
		{"credential token too long", `{"type":"credential","credential":{"generation":2,"token":"` + strings.Repeat("t", MaxCredentialLen+1) + `"}}`, false},
		{"credential ack", `{"type":"credentialAck","credential":{"generation":2,"token":"ecoa_x"}}`, true},
		{"credential ack with an error", `{"type":"credentialAck","credential":{"generation":2,"error":"forbidden"}}`, true},
		{"credential ack with both", `{"type":"credentialAck","credential":{"generation":2,"token":"ecoa_x","error":"forbidden"}}`, false},
		{"credential ack with neither", `{"type":"credentialAck","credential":{"generation":2}}`, false},
		{"no type", `{"seq":1}`, false},
		{"not an object", `[1,2]`, false},
		{"not JSON", `hello`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeMessage([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeMessage(%s) = %+v, %v; want ok=%v", tc.body, m, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
		})
	}
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{"2.0": true, "2.9": true, "1.0": false, "3.0": false, "0.9": false, "2": false, "": false, "2.x": false, "-2.0": false} {
		if err := checkVersion(v); (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v", v, err)
		} else if err != nil && !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("checkVersion(%q) = %v, not ErrUnsupportedVersion", v, err)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	msgs := []*message{
		{Type: msgPing, Seq: 1}, {Type: msgPong, Seq: 1},
		{Type: msgStatus, Status: &Status{State: StateReady}},
		{Type: msgGoodbye, Reason: "bye"},
	}
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = appendFrame(buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(buf)
	for _, want := range msgs {
		body, err := readFrame(r, DefaultMaxControlMessage)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMessage(body)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader: it must not
// panic, never return more than the limit, and agree with the encoder.
func FuzzReadFrame(f *testing.F) {
	for _, seed := range [][]byte{
		append(frame(`{"type":"ping","seq":1}`), `{"type":"ping","seq":1}`...),
		{0xff, 0xff, 0xff, 0xff},
		{0, 0, 0, 0},
		{0, 0, 1, 0, 'x'},
		append(frame(`{}`), `{}{}`...),
	} {
		f.Add(seed)
	}
	const limit = 1024
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			body, err := readFrame(r, limit)
			if err != nil {
				return
			}
			if len(body) == 0 || len(body) > limit {
				t.Fatalf("body of %d bytes with limit %d", len(body), limit)
			}
			_, _ = decodeMessage(body)
		}
	})
}

// FuzzDecodeMessage feeds arbitrary JSON to the message parser: it must not
// panic, and what it accepts must survive an encode/decode round trip.
func FuzzDecodeMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"hello","hello":{"protocolVersion":"1.0","agentVersion":"v1","kubernetesVersion":"v1.34.4","fingerprint":"5f0c","capabilities":["x"]}}`,
		`{"type":"accept","accept":{"protocolVersion":"1.0","sessionId":1,"heartbeatIntervalMs":10000,"heartbeatTimeoutMs":30000}}`,
		`{"type":"reject","reason":"cluster fingerprint mismatch"}`,
		`{"type":"ping","seq":18446744073709551615}`,
		`{"type":"status","status":{"state":"Failing","reason":"x"}}`,
		`{"type":"goodbye"}`,
		`{"type":"hello","hello":{"protocolVersion":"99999999999999999999.0"}}`,
		`{"type":"hello","hello":null}`,
		`{"type":"hello","hello":{"protocolVersion":"1.0","capabilities":[]}}`,
		`{"type":"goodbye","reason":"\xff\xfe"}`,
		`{"type":"credential","credential":{"generation":2,"token":"ecoa_x"}}`,
		`{"type":"credentialAck","credential":{"generation":9223372036854775807,"error":"forbidden"}}`,
		`{"type":"credentialAck","credential":{"generation":-1,"token":"x","error":"y"}}`,
		`{"type":"credential","credential":null}`,
		`{"type":1}`, `null`, `{`, "\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeMessage(body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		b, err := appendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		body2, err := readFrame(bytes.NewReader(b), len(b))
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeMessage(body2)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", body2, err)
		}
		// Encoding is canonical: a second round gives the same bytes.
		if b2, _ := appendFrame(nil, m2); !bytes.Equal(b, b2) {
			t.Fatalf("round trip: %s -> %s", b, b2)
		}
	})
}
