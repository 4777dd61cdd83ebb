// Command gomemstore is a Dapr pluggable state store written in Go: the generated
// dapr.proto.components.v1 code of github.com/dapr/dapr served by grpc-go, with gRPC
// reflection, on a Unix socket in the pluggable components folder. The data lives in memory;
// etags are version numbers, as in the Python example (examples/pluggable-memory).
//
//	go build -o gomemstore . && ./gomemstore -folder /tmp/dapr-components-sockets -name gomemstore
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	proto "github.com/dapr/dapr/pkg/proto/components/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

type entry struct {
	value   []byte
	version uint64
}

// store is the state store: one map for every component instance the runtime names.
type store struct {
	proto.UnimplementedStateStoreServer
	mu      sync.Mutex
	data    map[string]entry
	version uint64
}

func (s *store) Init(_ context.Context, req *proto.InitRequest) (*proto.InitResponse, error) {
	log.Printf("init with %d metadata keys", len(req.GetMetadata().GetProperties()))
	return &proto.InitResponse{}, nil
}

func (s *store) Features(context.Context, *proto.FeaturesRequest) (*proto.FeaturesResponse, error) {
	return &proto.FeaturesResponse{Features: []string{"ETAG"}}, nil
}

func (s *store) Ping(context.Context, *proto.PingRequest) (*proto.PingResponse, error) {
	return &proto.PingResponse{}, nil
}

func (s *store) Get(_ context.Context, req *proto.GetRequest) (*proto.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	found, ok := s.data[req.GetKey()]
	if !ok {
		return &proto.GetResponse{}, nil
	}
	return &proto.GetResponse{Data: found.value, Etag: etagOf(found)}, nil
}

func (s *store) Set(_ context.Context, req *proto.SetRequest) (*proto.SetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(req.GetKey(), req.GetEtag(), req.GetOptions()); err != nil {
		return nil, err
	}
	s.version++
	s.data[req.GetKey()] = entry{value: req.GetValue(), version: s.version}
	return &proto.SetResponse{}, nil
}

func (s *store) Delete(_ context.Context, req *proto.DeleteRequest) (*proto.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(req.GetKey(), req.GetEtag(), req.GetOptions()); err != nil {
		return nil, err
	}
	delete(s.data, req.GetKey())
	return &proto.DeleteResponse{}, nil
}

func (s *store) BulkGet(_ context.Context, req *proto.BulkGetRequest) (*proto.BulkGetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := make([]*proto.BulkStateItem, 0, len(req.GetItems()))
	for _, item := range req.GetItems() {
		found, ok := s.data[item.GetKey()]
		if !ok {
			items = append(items, &proto.BulkStateItem{Key: item.GetKey()})
			continue
		}
		items = append(items, &proto.BulkStateItem{Key: item.GetKey(), Data: found.value, Etag: etagOf(found)})
	}
	return &proto.BulkGetResponse{Items: items}, nil
}

// check refuses a write whose etag is not the key's version (FAILED_PRECONDITION), is not a
// version at all (INVALID_ARGUMENT), or asks for a first write of a key that exists.
func (s *store) check(key string, etag *proto.Etag, options *proto.StateOptions) error {
	current, exists := s.data[key]
	if etag != nil {
		if _, err := strconv.ParseUint(etag.GetValue(), 10, 64); err != nil {
			return status.Errorf(codes.InvalidArgument, "etag %q is not mine", etag.GetValue())
		}
		if !exists || etagOf(current).GetValue() != etag.GetValue() {
			return status.Error(codes.FailedPrecondition, "etag mismatch")
		}
	} else if options.GetConcurrency() == proto.StateOptions_CONCURRENCY_FIRST_WRITE && exists {
		return status.Error(codes.FailedPrecondition, "first write: the key exists")
	}
	return nil
}

func etagOf(found entry) *proto.Etag {
	return &proto.Etag{Value: strconv.FormatUint(found.version, 10)}
}

func main() {
	folder := flag.String("folder", "/tmp/dapr-components-sockets", "the pluggable components folder")
	name := flag.String("name", "gomemstore", "the component type: the socket is <folder>/<name>.sock")
	flag.Parse()
	socket := filepath.Join(*folder, *name+".sock")
	if err := os.MkdirAll(*folder, 0o755); err != nil {
		log.Fatalf("make %s: %v", *folder, err)
	}
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatalf("listen on %s: %v", socket, err)
	}
	server := grpc.NewServer()
	proto.RegisterStateStoreServer(server, &store{data: map[string]entry{}})
	reflection.Register(server)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		server.GracefulStop()
	}()
	log.Printf("serving %s", socket)
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serve: %v", err)
	}
	_ = os.Remove(socket)
}
