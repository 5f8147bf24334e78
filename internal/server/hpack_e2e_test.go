package server_test

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestResponseHeadersNotIndexed checks that berth's HPACK encoder keeps
// no dynamic table (Server.Serve's HTTP2 config): every field of a
// response's header block is an index into the static table or a literal
// that is not indexed, so that an open HTTP/2 connection holds no encoder
// table of its responses' headers. It speaks HTTP/2 by hand, since
// net/http's client decodes the block without showing how it was encoded.
func TestResponseHeadersNotIndexed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Two requests on one connection: an encoder with a table indexes
	// headers of the connection's responses (net/http's did in the second).
	for _, id := range []uint32{1, 3} {
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "berth"}, {":path", "/health"}} {
			if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	for answered < 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d responses: %v", answered, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.HeadersFrame:
			if !f.HeadersEnded() {
				t.Fatal("a response's headers span CONTINUATION frames; this test reads one frame")
			}
			indexed, err := incrementallyIndexed(f.HeaderBlockFragment())
			if err != nil {
				t.Fatalf("stream %d: %v", f.StreamID, err)
			}
			if indexed > 0 {
				t.Errorf("stream %d: %d header fields were added to the encoder's dynamic table", f.StreamID, indexed)
			}
			answered++
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY: %v %s", f.ErrCode, f.DebugData())
		}
	}
}

// incrementallyIndexed counts the fields of an HPACK header block encoded
// as literals with incremental indexing (RFC 7541 §6.2.1): those the
// encoder added to its dynamic table.
func incrementallyIndexed(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		var err error
		switch c := b[0]; {
		case c&0x80 != 0: // indexed field (§6.1)
			_, b, err = hpackInt(b, 7)
		case c&0xc0 == 0x40: // literal with incremental indexing (§6.2.1)
			n++
			b, err = hpackLiteral(b, 6)
		case c&0xe0 == 0x20: // dynamic table size update (§6.3)
			_, b, err = hpackInt(b, 5)
		default: // literal without indexing or never indexed (§6.2.2, §6.2.3)
			b, err = hpackLiteral(b, 4)
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var errShortBlock = errors.New("truncated header block")

// hpackLiteral skips a literal field whose name index has an n-bit
// prefix: the name, when not indexed, then the value.
func hpackLiteral(b []byte, n uint) ([]byte, error) {
	idx, b, err := hpackInt(b, n)
	if err != nil {
		return nil, err
	}
	if idx == 0 {
		if b, err = hpackString(b); err != nil {
			return nil, err
		}
	}
	return hpackString(b)
}

// hpackString skips a string literal (§5.2): a Huffman bit and a 7-bit
// prefixed length, then that many bytes.
func hpackString(b []byte) ([]byte, error) {
	l, b, err := hpackInt(b, 7)
	if err != nil {
		return nil, err
	}
	if uint64(len(b)) < l {
		return nil, errShortBlock
	}
	return b[l:], nil
}

// hpackInt decodes an integer with an n-bit prefix (§5.1).
func hpackInt(b []byte, n uint) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errShortBlock
	}
	limit := uint64(1)<<n - 1
	v := uint64(b[0]) & limit
	b = b[1:]
	if v < limit {
		return v, b, nil
	}
	for shift := uint(0); len(b) > 0 && shift < 63; shift += 7 {
		c := b[0]
		b = b[1:]
		v += uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, b, nil
		}
	}
	return 0, nil, errShortBlock
}
