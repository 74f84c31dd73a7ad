package otlp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/ingest"
)

// GRPCOptions configure the OTLP/gRPC listener.
type GRPCOptions struct {
	Listen string      // host:port (OTLP's usual port is 4317)
	TLS    *tls.Config // nil: plaintext (the caller decides whether that is allowed)
	// MaxConns bounds concurrent connections, MaxStreams the concurrent
	// Export calls on one connection (defaults 1000 and 100).
	MaxConns   int
	MaxStreams uint32
}

// GRPCServer serves the OTLP/gRPC LogsService (Export) on its own
// listener, with the same mapping, limits, metrics and answer-after-append
// as POST /v1/logs. The bearer token comes in the "authorization"
// metadata, as OTLP exporters send headers. Stop it with Close.
type GRPCServer struct {
	collogs.UnimplementedLogsServiceServer
	h     *Handler
	authn auth.Authenticator
	srv   *grpc.Server
	ln    net.Listener
	done  chan error
	// maxRecords bounds the log records of one request, checked on the
	// wire before it is decoded (decodeExport).
	maxRecords int
}

// StartGRPC binds opts.Listen and serves until Close.
func StartGRPC(opts GRPCOptions, authn auth.Authenticator, h *Handler) (*GRPCServer, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 1000
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = 100
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("otlp grpc: listen %s: %w", opts.Listen, err)
	}
	lim := h.Ingest.Limits()
	sopts := []grpc.ServerOption{
		// A request larger than the REST batch limit is refused by gRPC
		// itself (ResourceExhausted) before it is decoded.
		grpc.MaxRecvMsgSize(lim.MaxBatchBytes),
		grpc.MaxConcurrentStreams(opts.MaxStreams),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	sopts = append(sopts, grpc.ForceServerCodec(rawServerCodec{}))
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	g := &GRPCServer{h: h, authn: authn, srv: grpc.NewServer(sopts...), ln: netutil.LimitListener(ln, opts.MaxConns), done: make(chan error, 1)}
	g.maxRecords = lim.MaxBatchCount
	g.srv.RegisterService(&logsServiceDesc, g)
	go func() { // the gRPC server: ends in Close
		g.done <- g.srv.Serve(g.ln)
	}()
	return g, nil
}

// Addr is the bound address.
func (g *GRPCServer) Addr() net.Addr { return g.ln.Addr() }

// Close stops accepting, lets running Export calls finish until ctx ends
// (then cuts them), and returns once the server has stopped.
func (g *GRPCServer) Close(ctx context.Context) error {
	stopped := make(chan struct{})
	go func() { // ends when GracefulStop returns (Stop below forces it)
		g.srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		g.srv.Stop()
		<-stopped
	}
	if err := <-g.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("otlp grpc: %w", err)
	}
	return nil
}

// Export is LogsService.Export: authenticate, check the record count,
// map, append, answer (partial success names refused records). The
// listener reaches it through logsServiceDesc, which checks the wire bytes
// first (after authenticating: an anonymous caller learns nothing of the
// request's checks).
func (g *GRPCServer) Export(ctx context.Context, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	p, remote, err := g.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return g.export(ctx, p, remote, req)
}

// peerAddr is the caller's address ("" when unknown).
func peerAddr(ctx context.Context) string {
	if pr, ok := peer.FromContext(ctx); ok {
		return pr.Addr.String()
	}
	return ""
}

// authenticate checks the bearer token of the call's "authorization"
// metadata and that its principal may publish.
func (g *GRPCServer) authenticate(ctx context.Context) (p *auth.Principal, remote string, err error) {
	remote = peerAddr(ctx)
	tok := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if t, ok := strings.CutPrefix(v, "Bearer "); ok {
				tok = strings.TrimSpace(t)
			}
		}
	}
	if tok == "" {
		g.h.refuse(remote, "unauthenticated", 1, errors.New("no bearer token"))
		return nil, remote, status.Error(codes.Unauthenticated, `missing bearer token (metadata "authorization: Bearer <token>")`)
	}
	p, err = g.authn.Authenticate(ctx, tok)
	if err != nil {
		g.h.refuse(remote, "unauthenticated", 1, err)
		return nil, remote, status.Error(codes.Unauthenticated, err.Error())
	}
	if !p.CanPublish() {
		return nil, remote, status.Errorf(codes.PermissionDenied, "role %s may not publish events", p.Role)
	}
	return p, remote, nil
}

func (g *GRPCServer) export(ctx context.Context, p *auth.Principal, remote string, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	resp, err := g.h.export(ctx, remote, p, &Request{Logs: req})
	var tm *tooManyRecords
	switch {
	case err == nil:
		return resp, nil
	case errors.As(err, &tm):
		// Not retryable: the same request would be refused again.
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ingest.ErrForbidden):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	default:
		// Unavailable is retryable for an OTLP exporter; the record ids
		// make the retry safe.
		return nil, status.Error(codes.Unavailable, err.Error())
	}
}

// logsServiceDesc is LogsService with Export taking the request's wire
// bytes (rawRequest) rather than the decoded message, so that the scans
// run by decodeExport answer with the status code OTLP exporters act on
// (InvalidArgument: do not retry). A codec error would reach the client as
// Internal whatever it said (grpc-go wraps every codec error so).
var logsServiceDesc = grpc.ServiceDesc{
	ServiceName: collogs.LogsService_ServiceDesc.ServiceName,
	HandlerType: (*collogs.LogsServiceServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var raw rawRequest
			if err := dec(&raw); err != nil {
				return nil, err
			}
			g := srv.(*GRPCServer)
			p, remote, err := g.authenticate(ctx)
			if err != nil {
				return nil, err
			}
			req, err := g.decodeExport(raw)
			if err != nil {
				reason := "decode"
				if errors.Is(err, errTooManyRecords) || errors.Is(err, errTooManyMessages) {
					reason = "too_large"
				}
				g.h.refuse(remote, reason, 1, err)
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
			return g.export(ctx, p, remote, req)
		},
	}},
	Metadata: collogs.LogsService_ServiceDesc.Metadata,
}

// rawRequest holds a request's wire bytes until decodeExport checks them.
type rawRequest []byte

// decodeExport runs the same scans as POST /v1/logs before decoding: a
// 16 MiB message of empty records (2 bytes each on the wire, hundreds once
// decoded) is refused before the decoder allocates gigabytes.
func (g *GRPCServer) decodeExport(b rawRequest) (*collogs.ExportLogsServiceRequest, error) {
	req := new(collogs.ExportLogsServiceRequest)
	if _, err := countProto(b, g.maxRecords); err != nil {
		if errors.Is(err, errTooManyRecords) {
			return nil, fmt.Errorf("more than %d log records in one request: lower the exporter's batch size: %w", g.maxRecords, errTooManyRecords)
		}
		return nil, fmt.Errorf("request is not an OTLP ExportLogsServiceRequest: %w", err)
	}
	budget := maxMessages
	if err := countMessages(b, req.ProtoReflect().Descriptor(), &budget, 0); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("request is not an OTLP ExportLogsServiceRequest: %w", err)
	}
	return req, nil
}

// rawServerCodec is the listener's codec: requests arrive as rawRequest
// (copied: gRPC may reuse its buffer once Unmarshal returns), responses
// are marshalled as protobuf.
type rawServerCodec struct{}

func (rawServerCodec) Name() string { return "proto" }

func (rawServerCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("otlp grpc: cannot marshal %T", v)
	}
	return proto.Marshal(m)
}

func (rawServerCodec) Unmarshal(b []byte, v any) error {
	r, ok := v.(*rawRequest)
	if !ok {
		return fmt.Errorf("otlp grpc: cannot unmarshal into %T", v)
	}
	*r = append(rawRequest(nil), b...)
	return nil
}
