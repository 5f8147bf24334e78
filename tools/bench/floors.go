package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/tmaxmax/go-sse"
)

// floorFlag is the hidden flag with which the harness re-executes itself
// as a stream floor (`bench -floor sse|ws|h2`), so that the floor's
// resident set is its own.
const floorFlag = "-floor"

// Stream kinds: what an idle stream is, on berth and on its floor.
const (
	kindSSE = "sse"
	kindWS  = "ws"
	kindH2  = "h2"
)

// unaryFloor serves header and body to every request: a bare net/http
// server answering what berth answered for the same call, headers
// included (net/http sets Date and Content-Length itself). It reads the
// request body, as berth must. It listens on a free port of 127.0.0.1
// until ctx ends.
func unaryFloor(ctx context.Context, header http.Header, body []byte) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			for k, v := range header {
				w.Header()[k] = v
			}
			_, _ = w.Write(body)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// floorHandler is the bare library server of kind: what holding an idle
// stream costs with no berth around it.
//
//   - sse: a go-sse session whose headers are flushed (as berth's are),
//     subscribed to a topic on which nothing is published;
//   - ws: a coder/websocket connection speaking berth's subprotocol that
//     reads one frame (the subscribe), answers it, and reads on (one
//     goroutine, as the library needs to answer pings);
//   - h2: a streaming response over unencrypted HTTP/2 whose headers are
//     flushed and which then waits for the client to go, as a Connect
//     server stream does between messages.
func floorHandler(kind string) (http.Handler, error) {
	switch kind {
	case kindSSE:
		joe := &sse.Joe{}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, err := sse.Upgrade(w, r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if err := sess.Flush(); err != nil {
				return
			}
			_ = joe.Subscribe(r.Context(), sse.Subscription{Client: sess, Topics: []string{"idle"}})
		}), nil
	case kindWS:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wsSubprotocol}})
			if err != nil {
				return
			}
			defer conn.CloseNow()
			ctx := context.WithoutCancel(r.Context())
			if _, _, err := conn.Read(ctx); err != nil {
				return
			}
			if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribed","id":"1"}`)); err != nil {
				return
			}
			for {
				if _, _, err := conn.Read(ctx); err != nil {
					return
				}
			}
		}), nil
	case kindH2:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/connect+json")
			w.WriteHeader(http.StatusOK)
			if err := http.NewResponseController(w).Flush(); err != nil {
				return
			}
			<-r.Context().Done()
		}), nil
	}
	return nil, fmt.Errorf("no floor %q (sse, ws, h2)", kind)
}

// serveFloor is the body of a floor process: the floor of kind on a free
// port of 127.0.0.1 (HTTP/1.1 and unencrypted HTTP/2, as berth), whose
// address it prints on stdout. It runs until stdin closes, which happens
// when the harness goes, whatever way.
func serveFloor(kind string) error {
	h, err := floorHandler(kind)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: h, Protocols: &http.Protocols{}}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// startFloor re-executes this program as the floor of kind and returns it
// with its base URL.
func startFloor(ctx context.Context, kind string) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, floorFlag, kind) // #nosec G204 -- this very program, with a fixed flag
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	c, err := startChild(cmd)
	if err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		if a == "" {
			c.stop(time.Second)
			return nil, "", errors.New("the " + kind + " floor printed no address")
		}
		return c, "http://" + a, nil
	case <-ctx.Done():
		c.stop(time.Second)
		return nil, "", ctx.Err()
	}
}
