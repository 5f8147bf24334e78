package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// subscriber is one SSE stream of a task's log in a fan-out run. Its
// reading is kept cheap, so that the harness is not what limits the
// figure: lines are cut with bufio.Reader.ReadSlice (no copy), the seq is
// the "id:" field and the agent's time is found by a byte search for the
// marker in the "data:" field, with no JSON decoding.
type subscriber struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	lat    []time.Duration // one per line received, in order
	recv   []int64         // each line's receipt (UnixNano), in order
	dups   int64
	last   time.Time // the last line's receipt
}

// open starts the stream and returns once its headers are in.
func (s *subscriber) open(ctx context.Context, client *http.Client, url, token string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
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
	s.body, s.cancel = res.Body, cancel
	return func() {}, nil // closeSubscribers ends it
}

var (
	idField   = []byte("id:")
	dataField = []byte("data:")
	endEvent  = []byte("event: end")
	marker    = []byte(markerPrefix)
)

// read consumes the stream until lines marked lines arrived, the task's
// end event, an error or ctx's end (which closes the body).
func (s *subscriber) read(ctx context.Context, lines int) {
	stop := context.AfterFunc(ctx, func() { _ = s.body.Close() })
	defer stop()
	r := bufio.NewReaderSize(s.body, 16<<10)
	var seq, lastSeq int64
	for len(s.lat) < lines {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long line that is none of ours: skip it
		}
		if err != nil {
			return
		}
		switch {
		case bytes.HasPrefix(line, idField):
			seq, _ = strconv.ParseInt(string(bytes.TrimSpace(line[len(idField):])), 10, 64)
		case bytes.HasPrefix(line, dataField):
			sent, ok := markedTime(line)
			if !ok {
				continue
			}
			now := time.Now()
			if seq <= lastSeq {
				s.dups++
				continue
			}
			lastSeq = seq
			s.lat = append(s.lat, now.Sub(time.Unix(0, sent)))
			s.recv = append(s.recv, now.UnixNano())
			s.last = now
		case bytes.HasPrefix(line, endEvent):
			return
		}
	}
}

// markedTime is the UnixNano after the marker in line, if it has one.
func markedTime(line []byte) (int64, bool) {
	i := bytes.Index(line, marker)
	if i < 0 {
		return 0, false
	}
	rest := line[i+len(marker):]
	j := bytes.IndexByte(rest, ';')
	if j < 0 {
		return 0, false
	}
	t, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return t, err == nil
}
