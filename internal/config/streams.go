package config

import "time"

// Streams configures the live streams: SSE, Connect server streams and the
// WebSocket.
type Streams struct {
	// Heartbeat is how often an SSE stream gets a comment line.
	Heartbeat time.Duration
	// StallTimeout is how long a stream client may take no data (an SSE
	// write blocked, a WebSocket's queue full) before it is dropped.
	StallTimeout time.Duration
	// WSPingInterval is how often the server pings a WebSocket client; a
	// client that does not answer is dropped.
	WSPingInterval time.Duration
}

func defaultStreams() Streams {
	return Streams{
		Heartbeat:      15 * time.Second,
		StallTimeout:   30 * time.Second,
		WSPingInterval: 20 * time.Second,
	}
}

func (s *flagSet) addStreamFlags(c *Config) {
	st := &c.Streams
	s.section("Live streams")
	s.add(&durationValue{&st.Heartbeat}, "stream-heartbeat", "duration", formatDuration(st.Heartbeat),
		"How often an SSE stream gets a heartbeat comment, so proxies keep it open.")
	s.add(&durationValue{&st.StallTimeout}, "stream-stall-timeout", "duration", formatDuration(st.StallTimeout),
		"Drop a stream client that takes no data for this long (WebSocket: close 1008 with a reason); it resumes from its last seq when it reconnects.")
	s.add(&durationValue{&st.WSPingInterval}, "ws-ping-interval", "duration", formatDuration(st.WSPingInterval),
		"How often the server pings a WebSocket client; one that does not answer is dropped.")
}

func (c *Config) checkStreams(p *problems) {
	st := &c.Streams
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"stream-heartbeat", st.Heartbeat},
		{"stream-stall-timeout", st.StallTimeout},
		{"ws-ping-interval", st.WSPingInterval},
	} {
		if d.v < 10*time.Millisecond {
			p.add(d.flag, formatDuration(d.v), "want a duration of 10ms or more")
		}
	}
}
