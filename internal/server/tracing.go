package server

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/berthhq/berth/internal/telemetry"
)

// protocolKey is the attribute that tells the wire protocols apart in the
// RPC metrics: otelconnect's rpc.system.name says "grpc" for gRPC and
// gRPC-Web alike (its semantic conventions know no gRPC-Web), so berth adds
// rpc.protocol — connect, grpc or grpcweb — as a label of its own.
const protocolKey = attribute.Key("rpc.protocol")

// Prebuilt, so labelling a call copies a value instead of building one.
var protocolAttrs = map[string]attribute.KeyValue{
	connect.ProtocolNameConnect: protocolKey.String(connect.ProtocolNameConnect),
	connect.ProtocolNameGRPC:    protocolKey.String(connect.ProtocolNameGRPC),
	connect.ProtocolNameGRPCWeb: protocolKey.String(connect.ProtocolNameGRPCWeb),
}

// rpcTelemetry is the outermost RPC interceptor: otelconnect's metrics
// (through meters) with the protocol label, and, when tracing is on, a
// server span per RPC — a child of the HTTP request's span (see
// telemetry.Tracing.Handler), which continued the caller's traceparent.
// With tracing off, rpcMetrics records the same metrics at a fraction of
// otelconnect's cost.
func rpcTelemetry(meters metric.MeterProvider, tracing *telemetry.Tracing) (connect.ServerInterceptor, error) {
	if !tracing.Enabled() {
		m, err := newRPCMetrics(meters)
		if err != nil {
			return nil, err
		}
		return m.interceptor, nil
	}
	otel, err := otelconnect.NewServerInterceptor(
		otelconnect.WithMeterProvider(meters),
		otelconnect.WithTracerProvider(tracing.Provider),
		otelconnect.WithPropagator(tracing.Propagator),
		// The HTTP span already continued the caller's trace; a call
		// reaching here without one (in-process) trusts it too.
		otelconnect.WithTrustRemote(),
	)
	if err != nil {
		return nil, fmt.Errorf("otelconnect: %w", err)
	}
	return func(next connect.ServerFunc) connect.ServerFunc {
		return otel(labelProtocol(next))
	}, nil
}

// labelProtocol adds the call's wire protocol to otelconnect's metric
// attributes (its labeler is in the context inside its interceptor).
func labelProtocol(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		if l, ok := otelconnect.LabelerFromContext(ctx); ok {
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				if a, ok := protocolAttrs[info.Protocol]; ok {
					l.Add(a)
				}
			}
		}
		return next(ctx, spec, stream)
	}
}
