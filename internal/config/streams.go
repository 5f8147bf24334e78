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

func (s *flagSet) addStreamFlags(c *Config) {
	st := &c.Streams
	s.section("Live streams")
	s.duration(&st.Heartbeat, "stream-heartbeat", 15*time.Second,
		"How often an SSE stream gets a heartbeat comment, so proxies keep it open; also how often open SSE and Connect streams re-check their credentials.")
	s.duration(&st.StallTimeout, "stream-stall-timeout", 30*time.Second,
		"Drop a stream client that takes no data for this long (WebSocket: close 1008 with a reason); it resumes from its last seq when it reconnects.")
	s.duration(&st.WSPingInterval, "ws-ping-interval", 20*time.Second,
		"How often the server pings a WebSocket client (and re-checks its credentials); one that does not answer is dropped.")
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
