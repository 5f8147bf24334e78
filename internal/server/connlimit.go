package server

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Connection and stream caps derived from the process's descriptor limit.
const (
	// descriptorHeadroomMin is the least number of descriptors kept out of
	// the connection cap, for the store, Valkey, the runtime, task
	// processes' pipes and log files.
	descriptorHeadroomMin = 256
	// streamShareOfConnections is the share of the connection cap the
	// long-lived streams may hold, in quarters: the rest stays free for
	// /health, /ready and ordinary calls.
	streamShareOfConnections = 3
	// refusingAtOnce bounds the refused connections being answered at once;
	// past it a refused connection is closed without an answer, so that a
	// flood of refusals does not itself hold descriptors.
	refusingAtOnce = 64
)

// connectionCap returns the cap on the main listener's connections: set
// when positive, else the descriptor limit less its headroom (a tenth, at least
// descriptorHeadroomMin). limit is the descriptor limit (0: unknown, then
// no cap is derived).
func connectionCap(set, limit int64) int64 {
	if set > 0 || limit <= 0 {
		return set
	}
	headroom := max(limit/10, descriptorHeadroomMin)
	if limit-headroom < 64 {
		return max(limit/2, 16)
	}
	return limit - headroom
}

// streamCap is the share of connections streams may hold (0: no cap).
func streamCap(connections int64) int64 {
	return connections * streamShareOfConnections / 4
}

// limitListener caps the connections a listener holds open. A connection
// past the cap is answered at once with 503 and Retry-After and closed,
// rather than left waiting in the kernel's backlog where the client cannot
// tell a full server from a dead one — and where /health would wait too.
type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing chan struct{}
	refused  func() // counts a refusal; may be nil
}

func newLimitListener(ln net.Listener, max int64, refused func()) net.Listener {
	if max <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: max, refusing: make(chan struct{}, refusingAtOnce), refused: refused}
}

// Accept returns the next connection under the cap, refusing those over it.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
		}
		l.open.Add(-1)
		if l.refused != nil {
			l.refused()
		}
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				refuseConn(c)
			}()
		default:
			_ = c.Close()
		}
	}
}

// overloaded is the answer to a connection past the cap.
var overloaded = func() []byte {
	body := `{"code":"unavailable","message":"the server holds its most connections; retry later"}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// refuseConn reads what the client sent first (so that closing does not
// reset the connection before it reads the answer), answers 503 and
// closes.
func refuseConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	_, _ = c.Read(buf)
	_, _ = c.Write(overloaded)
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
		_, _ = c.Read(buf) // until the client closes, or the deadline
	}
}

// countedConn gives its place back once, when it is closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
