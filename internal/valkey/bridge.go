package valkey

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	valkeygo "github.com/valkey-io/valkey-go"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/telemetry"
)

// Codec turns bus events into bytes and back, for the Bridge. The server
// supplies one that knows its event types.
type Codec interface {
	// Encode returns v's bytes, or an error for a value it does not know.
	Encode(v any) ([]byte, error)
	// Decode returns the event data encodes.
	Decode(data []byte) (any, error)
}

// The Bridge's queue sizes: beyond them events are dropped, and the
// subscribers that may have missed them resynchronise from the store.
const (
	bridgeOutQueue = 4096
	bridgeInQueue  = 4096
	bridgeBatch    = 256
)

// Bridge carries a bus's events between berth instances over Valkey
// pub/sub: a task running on one instance streams to a client connected to
// another. Replay is never its job: the followers in internal/stream read
// the store for anything before their subscription, and again whenever
// they are marked lagged.
//
// Publishing: every event published on the local bus is queued (never
// blocking the publisher), encoded with the Codec by one sender goroutine
// and PUBLISHed, in order, on "<namespace>:bus:<topic>", prefixed with this
// instance's id. When the queue is full, Valkey is down or a PUBLISH
// fails, events are dropped for the other instances; the next successful
// batch is then preceded by a message on "<namespace>:busctl:lag" that has
// every other instance mark its subscribers lagged (bus.LagAll).
//
// Receiving: one PSUBSCRIBE to both patterns, on the client's connection,
// for the bridge's life. Per-topic SUBSCRIBE as local subscribers come
// and go would save traffic, but a subscription would only take effect a
// round trip after bus.Subscribe returned, and the followers rely on being
// subscribed before they read the store. Events of this instance are
// ignored (the local bus delivered them already); events of topics with no
// local subscriber are dropped before decoding. Every (re)established
// PSUBSCRIBE, every loss of the client, a full receive queue and an event
// that does not decode mark every local subscriber lagged.
type Bridge struct {
	c     *Client
	bus   *bus.Bus
	codec Codec

	eventPrefix string // "<namespace>:bus:"
	lagChannel  string // "<namespace>:busctl:lag"

	out     chan outEvent
	in      chan valkeygo.PubSubMessage
	dropped atomic.Bool // events were lost for the others since the last lag message

	sent, received, droppedOut, droppedIn prometheus.Counter

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// outEvent is one event waiting to be published.
type outEvent struct {
	topic string
	v     any
}

// NewBridge connects b to the other instances through c, and starts doing
// so: it becomes b's Remote, and c's losses mark b's subscribers lagged.
// Close it before closing c.
func NewBridge(c *Client, b *bus.Bus, codec Codec) *Bridge {
	ctx, cancel := context.WithCancel(context.Background())
	br := &Bridge{
		c:           c,
		bus:         b,
		codec:       codec,
		eventPrefix: c.Key("bus") + ":",
		lagChannel:  c.Key("busctl", "lag"),
		out:         make(chan outEvent, bridgeOutQueue),
		in:          make(chan valkeygo.PubSubMessage, bridgeInQueue),
		cancel:      cancel,
	}
	br.registerMetrics(c.opts.Registerer)
	c.OnLoss(b.LagAll)
	b.SetRemote(br)
	br.wg.Add(3)
	go br.send(ctx)
	go br.receive(ctx)
	go br.deliver(ctx)
	return br
}

// Close stops the bridge: the bus goes back to serving this instance only.
// It is safe to call twice.
func (br *Bridge) Close() {
	br.once.Do(func() {
		br.bus.SetRemote(nil)
		br.cancel()
		br.wg.Wait()
	})
}

// Publish queues an event of the local bus for the other instances. It
// never blocks: when the queue is full the event is dropped for them.
func (br *Bridge) Publish(topic string, v any) {
	select {
	case br.out <- outEvent{topic, v}:
	default:
		br.dropped.Store(true)
		br.droppedOut.Inc()
	}
}

// send publishes queued events in batches, in order.
func (br *Bridge) send(ctx context.Context) {
	defer br.wg.Done()
	id := br.c.ID()
	vk := br.c.Valkey()
	batch := make([]outEvent, 0, bridgeBatch)
	cmds := make(valkeygo.Commands, 0, bridgeBatch+1)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case e := <-br.out:
			batch = append(batch, e)
		}
	fill:
		for len(batch) < bridgeBatch {
			select {
			case e := <-br.out:
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if !br.c.Up() {
			br.dropped.Store(true)
			br.droppedOut.Add(float64(len(batch)))
			continue
		}
		cmds = cmds[:0]
		lag := br.dropped.Swap(false)
		if lag {
			cmds = append(cmds, vk.B().Publish().Channel(br.lagChannel).Message(id).Build())
		}
		for _, e := range batch {
			data, err := br.codec.Encode(e.v)
			if err != nil {
				// A value the codec does not know: a programming error,
				// the same for every event of its type.
				br.c.log.Error("valkey bridge: cannot encode event; other instances will not see it", "topic", e.topic, "err", err)
				br.droppedOut.Inc()
				continue
			}
			cmds = append(cmds, vk.B().Publish().Channel(br.eventPrefix+e.topic).Message(id+string(data)).Build())
		}
		pctx, cancel := context.WithTimeout(ctx, br.c.opts.HealthTimeout)
		failed := 0
		var firstErr error
		for _, r := range vk.DoMulti(pctx, cmds...) {
			if err := r.Error(); err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		if failed > 0 {
			br.dropped.Store(true)
			br.droppedOut.Add(float64(failed))
			br.c.ReportFailure(ctx, firstErr)
		}
		br.sent.Add(float64(len(cmds) - failed))
		cancel()
	}
}

// receive keeps one PSUBSCRIBE running, re-establishing it after failures.
func (br *Bridge) receive(ctx context.Context) {
	defer br.wg.Done()
	vk := br.c.Valkey()
	events := globEscape(br.eventPrefix) + "*"
	control := globEscape(br.lagChannel)
	rctx := valkeygo.WithOnSubscriptionHook(ctx, func(s valkeygo.PubSubSubscription) {
		if s.Kind == "psubscribe" && s.Channel == events {
			// Whatever was published before now and not received is in
			// the store: have every follower read it.
			br.bus.LagAll()
		}
	})
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := vk.Receive(rctx, vk.B().Psubscribe().Pattern(events, control).Build(), func(m valkeygo.PubSubMessage) {
			select {
			case br.in <- m:
			default:
				br.droppedIn.Inc()
				br.bus.LagAll()
			}
		})
		if ctx.Err() != nil {
			return
		}
		br.bus.LagAll()
		br.c.ReportFailure(ctx, err)
		if time.Since(start) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// deliver decodes received events into the local bus, in order.
func (br *Bridge) deliver(ctx context.Context) {
	defer br.wg.Done()
	id := br.c.ID()
	for {
		var m valkeygo.PubSubMessage
		select {
		case <-ctx.Done():
			return
		case m = <-br.in:
		}
		from, data := m.Message[:min(len(id), len(m.Message))], m.Message[min(len(id), len(m.Message)):]
		if from == id {
			continue // published here, delivered here already
		}
		if m.Channel == br.lagChannel {
			br.bus.LagAll()
			continue
		}
		topic, ok := strings.CutPrefix(m.Channel, br.eventPrefix)
		if !ok || !br.bus.Subscribed(topic) {
			continue
		}
		br.received.Inc()
		v, err := br.codec.Decode([]byte(data))
		if err != nil {
			br.c.log.Error("valkey bridge: cannot decode event", "topic", topic, "err", err)
			br.droppedIn.Inc()
			br.bus.LagAll()
			continue
		}
		br.bus.Deliver(topic, v)
	}
}

// globEscape escapes s for use in a PSUBSCRIBE pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// registerMetrics creates the bridge's metrics on reg (when not nil).
func (br *Bridge) registerMetrics(reg prometheus.Registerer) {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_bus_remote_events_total",
		Help: "Bus events sent to (out) and received from (in) other berth instances through Valkey.",
	}, []string{"direction"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_bus_remote_dropped_total",
		Help: "Bus events not sent to (out) or not delivered from (in) other berth instances; their subscribers resynchronise from the store.",
	}, []string{"direction"})
	if reg != nil {
		events = telemetry.Register(reg, events)
		dropped = telemetry.Register(reg, dropped)
	}
	br.sent, br.received = events.WithLabelValues("out"), events.WithLabelValues("in")
	br.droppedOut, br.droppedIn = dropped.WithLabelValues("out"), dropped.WithLabelValues("in")
}
