// Command gocp is the benchmark's anchor: go-control-plane's delta ADS server serving a
// snapshot dumped by our translator (bench/anchor.py writes the dump), so that both
// servers hand the same bytes to the same simulated clients (bench/fleet_clients.py).
//
//	gocp -dump before.json -next after.json [-port 0]
//
// It prints "READY {json}" once serving, and on SIGHUP swaps to the other dump (the
// "change": -next, then back) and prints "SWAPPED {json}". Every node shares one snapshot: the node hash
// is a constant, as our per-pod server serves one snapshot to whoever connects.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The resource types of the dump, registered for decoding.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// dumpFile is what bench/anchor.py writes: every resource of one snapshot, serialized.
type dumpFile struct {
	Version   string `json:"version"`
	Resources []struct {
		TypeURL string `json:"type_url"`
		Name    string `json:"name"`
		Version string `json:"version"`
		Value   []byte `json:"value"` // base64 in JSON
	} `json:"resources"`
}

// oneNode gives every node the same snapshot key.
type oneNode struct{}

func (oneNode) ID(*core.Node) string { return "all" }

func load(path string) (*cache.Snapshot, int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var dump dumpFile
	if err := json.Unmarshal(raw, &dump); err != nil {
		return nil, 0, err
	}
	byType := map[string][]types.Resource{}
	for _, r := range dump.Resources {
		name := r.TypeURL[len("type.googleapis.com/"):]
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.TypeURL)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", name, err)
		}
		msg := mt.New().Interface()
		if err := proto.Unmarshal(r.Value, msg); err != nil {
			return nil, 0, fmt.Errorf("%s %s: %w", name, r.Name, err)
		}
		byType[r.TypeURL] = append(byType[r.TypeURL], msg)
	}
	snap, err := cache.NewSnapshot(dump.Version, byType)
	if err != nil {
		return nil, 0, err
	}
	return snap, len(dump.Resources), nil
}

func say(tag string, fields map[string]any) {
	fields["t"] = monotonic()
	out, _ := json.Marshal(fields)
	fmt.Printf("%s %s\n", tag, out)
	os.Stdout.Sync()
}

func main() {
	dump := flag.String("dump", "", "the snapshot served first")
	next := flag.String("next", "", "the snapshot swapped in on SIGHUP")
	port := flag.Int("port", 0, "listen port on 127.0.0.1 (0: any)")
	flag.Parse()

	ctx := context.Background()
	snaps := cache.NewSnapshotCache(true, oneNode{}, nil)
	first, count, err := load(*dump)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if err := snaps.SetSnapshot(ctx, "all", first); err != nil {
		fmt.Fprintln(os.Stderr, "set:", err)
		os.Exit(1)
	}
	second, _, err := load(*next)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load next:", err)
		os.Exit(1)
	}

	srv := server.NewServer(ctx, snaps, nil)
	grpcServer := grpc.NewServer(
		grpc.MaxConcurrentStreams(1000000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second}),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(grpcServer, srv)
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		snapshots := [2]*cache.Snapshot{first, second}
		current := 0
		for range hup {
			started := monotonic()
			current = 1 - current
			if err := snaps.SetSnapshot(ctx, "all", snapshots[current]); err != nil {
				fmt.Fprintln(os.Stderr, "swap:", err)
				continue
			}
			say("SWAPPED", map[string]any{"set_s": monotonic() - started})
		}
	}()
	go func() {
		<-term
		grpcServer.Stop()
	}()
	say("READY", map[string]any{
		"pid": os.Getpid(), "port": lis.Addr().(*net.TCPAddr).Port, "resources": count,
	})
	if err := grpcServer.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
	}
}
