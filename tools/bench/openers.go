package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// wsSubprotocol is the subprotocol of berth's /ws (internal/ws).
const wsSubprotocol = "berth.v1.json"

// sseOpener opens SSE streams to url, each on its own connection.
func sseOpener(client *http.Client, url, token string) opener {
	return func(ctx context.Context) (func(), error) {
		ctx, cancel := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return nil, err
		}
		req.Header.Set("Accept", "text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			cancel()
			return nil, err
		}
		if res.StatusCode != http.StatusOK {
			_ = res.Body.Close()
			cancel()
			return nil, fmt.Errorf("%w %d", errStatus, res.StatusCode)
		}
		return func() { cancel(); _ = res.Body.Close() }, nil
	}
}

// wsOpener opens WebSockets to url (ws://…/ws) speaking berth's
// subprotocol, each subscribed to channel: it sends the subscribe frame
// and waits for the "subscribed" answer. A goroutine per connection then
// reads and drops what comes, which is also what answers the server's
// pings (coder/websocket answers them only while reading).
func wsOpener(url, token, channel string) opener {
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	subscribe := []byte(`{"type":"subscribe","id":"1","channel":"` + channel + `"}`)
	return func(ctx context.Context) (func(), error) {
		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
			Subprotocols: []string{wsSubprotocol}, HTTPHeader: header,
		})
		if err != nil {
			return nil, err
		}
		if err := conn.Write(ctx, websocket.MessageText, subscribe); err != nil {
			_ = conn.CloseNow()
			return nil, err
		}
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				_ = conn.CloseNow()
				return nil, err
			}
			if bytes.Contains(msg, []byte(`"type":"error"`)) {
				_ = conn.CloseNow()
				return nil, fmt.Errorf("subscribe refused: %s", msg)
			}
			if bytes.Contains(msg, []byte(`"type":"subscribed"`)) {
				break
			}
		}
		readCtx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, _, err := conn.Read(readCtx); err != nil {
					return
				}
			}
		}()
		return func() { cancel(); _ = conn.CloseNow(); <-done }, nil
	}
}

// h2Opener opens Connect server streams (StreamTaskLogs, Connect JSON
// envelopes) over unencrypted HTTP/2, perConn streams to a connection
// (one client transport per perConn streams, each holding one
// connection). One stream a connection, the default, is the worst case
// and what a figure per stream means when every client is a separate
// agent or browser; streams sharing a connection share its socket's cost.
func h2Opener(url, token, taskID string, perConn int) opener {
	msg := []byte(`{"task_id":"` + taskID + `"}`)
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg))) // #nosec G115 -- a few dozen bytes
	copy(body[5:], msg)
	var mu sync.Mutex
	var shared *http.Transport
	opened := 0
	transport := func() *http.Transport {
		mu.Lock()
		defer mu.Unlock()
		if opened%perConn == 0 {
			shared = &http.Transport{Protocols: &http.Protocols{}, DisableCompression: true}
			shared.Protocols.SetUnencryptedHTTP2(true)
		}
		opened++
		return shared
	}
	return func(ctx context.Context) (func(), error) {
		t := transport()
		ctx, cancel := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			cancel()
			return nil, err
		}
		req.Header.Set("Content-Type", "application/connect+json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := t.RoundTrip(req)
		if err != nil {
			cancel()
			t.CloseIdleConnections()
			return nil, err
		}
		if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/connect+json") {
			_ = res.Body.Close()
			cancel()
			t.CloseIdleConnections()
			return nil, fmt.Errorf("%w %d over HTTP/%d, %s", errStatus, res.StatusCode, res.ProtoMajor, res.Header.Get("Content-Type"))
		}
		// The last stream of a shared connection to close leaves it idle,
		// and closing idle connections then ends it.
		return func() { cancel(); _ = res.Body.Close(); t.CloseIdleConnections() }, nil
	}
}
