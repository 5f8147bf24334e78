package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/telemetry"
)

// twoOutcomes answers ListAuthProviders and fails GetCurrentUser.
type twoOutcomes struct {
	berthv1connect.UnimplementedAuthServiceHandler
}

func (twoOutcomes) ListAuthProviders(context.Context, *berthv1.ListAuthProvidersRequest) (*berthv1.ListAuthProvidersResponse, error) {
	return &berthv1.ListAuthProvidersResponse{}, nil
}

func (twoOutcomes) GetCurrentUser(context.Context, *berthv1.GetCurrentUserRequest) (*berthv1.GetCurrentUserResponse, error) {
	return nil, connect.NewError(connect.CodeNotFound, "no such user")
}

// TestRPCMetricsMatchOtelconnect serves the same calls, over Connect, gRPC
// and gRPC-Web, once through otelconnect's interceptor (as berth ran it
// before rpcMetrics, and still does with tracing on) and once through
// rpcMetrics, and checks that both expose the same RPC duration series:
// the same names, help, labels and counts.
func TestRPCMetricsMatchOtelconnect(t *testing.T) {
	t.Parallel()
	res, err := telemetry.NewResource(t.Context(), "test")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(t *testing.T, interceptor func(meters *prometheus.Registry) connect.ServerInterceptor) string {
		reg := prometheus.NewRegistry()
		srv := connect.NewServer(interceptor(reg))
		berthv1connect.RegisterAuthServiceHandler(srv, twoOutcomes{})
		mux := http.NewServeMux()
		connecthttp.Mount(mux, srv)
		hs := httptest.NewUnstartedServer(mux)
		hs.Config.Protocols = new(http.Protocols)
		hs.Config.Protocols.SetHTTP1(true)
		hs.Config.Protocols.SetUnencryptedHTTP2(true)
		hs.Start()
		t.Cleanup(hs.Close)
		for _, p := range protocolOptions() {
			c := berthv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(p.client, hs.URL, p.opts...)))
			for range 2 {
				if _, err := c.ListAuthProviders(t.Context(), &berthv1.ListAuthProvidersRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.GetCurrentUser(t.Context(), &berthv1.GetCurrentUserRequest{}); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("GetCurrentUser: %v", err)
			}
		}
		return rpcSeriesText(t, reg)
	}
	meters := func(t *testing.T, reg *prometheus.Registry) metric.MeterProvider {
		mp, err := telemetry.NewMeterProvider(reg, res)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		return mp
	}
	before := serve(t, func(reg *prometheus.Registry) connect.ServerInterceptor {
		otel, err := otelconnect.NewServerInterceptor(otelconnect.WithMeterProvider(meters(t, reg)), otelconnect.WithoutTracing())
		if err != nil {
			t.Fatal(err)
		}
		return func(next connect.ServerFunc) connect.ServerFunc { return otel(labelProtocol(next)) }
	})
	after := serve(t, func(reg *prometheus.Registry) connect.ServerInterceptor {
		m, err := newRPCMetrics(meters(t, reg))
		if err != nil {
			t.Fatal(err)
		}
		return m.interceptor
	})
	if before == "" || !strings.Contains(before, `rpc_response_status_code="NOT_FOUND"`) {
		t.Fatalf("otelconnect recorded no series to compare:\n%s", before)
	}
	if before != after {
		t.Fatalf("rpcMetrics differs from otelconnect.\notelconnect:\n%s\nrpcMetrics:\n%s", before, after)
	}
}

// protocolOption is a client for one wire protocol.
type protocolOption struct {
	client *http.Client
	opts   []connecthttp.Option
}

func protocolOptions() []protocolOption {
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	plain := &http.Client{Timeout: time.Minute}
	return []protocolOption{
		{client: plain, opts: []connecthttp.Option{connecthttp.WithProtoJSON()}},
		{client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{Protocols: h2c}}, opts: []connecthttp.Option{connecthttp.WithGRPC()}},
		{client: plain, opts: []connecthttp.Option{connecthttp.WithGRPCWeb()}},
	}
}

// rpcSeriesText is the RPC metrics on reg as text: each family's name,
// help and type, and each series' labels and sample count, sorted.
func rpcSeriesText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "rpc_") {
			continue
		}
		lines = append(lines, mf.GetName()+" "+mf.GetType().String()+" "+mf.GetHelp())
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			h := m.GetHistogram()
			var bounds []string
			for _, b := range h.GetBucket() {
				bounds = append(bounds, strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
			}
			lines = append(lines, "  {"+strings.Join(labels, ",")+"} count="+strconv.FormatUint(h.GetSampleCount(), 10)+" buckets="+strings.Join(bounds, ","))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
