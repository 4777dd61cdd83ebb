package main

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

const runtimeService = "/spec.proto.runtime.v1.Runtime/"

// rawCodec sends pre-encoded protobuf bytes and keeps the response's bytes undecoded, so the
// load generator needs no generated code and spends nothing on (de)serialisation.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = data
	return nil
}

func (rawCodec) Name() string { return "proto" }

func getStateRequest(store, key string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, store)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, key)
}

func saveStateRequest(store, key string, value []byte) []byte {
	var item []byte
	item = protowire.AppendTag(item, 1, protowire.BytesType)
	item = protowire.AppendString(item, key)
	item = protowire.AppendTag(item, 2, protowire.BytesType)
	item = protowire.AppendBytes(item, value)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, store)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, item)
}

// grpcCall invokes one Runtime method with a fixed, pre-encoded request on one connection.
func grpcCall(target, method string, request []byte) (call, func(), error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context) error {
		var response []byte
		return conn.Invoke(ctx, runtimeService+method, &request, &response)
	}, func() { conn.Close() }, nil
}

func getNextIDRequest(store, key string, strong bool) []byte {
	var options []byte
	if strong {
		options = protowire.AppendTag(options, 1, protowire.VarintType)
		options = protowire.AppendVarint(options, 1) // SequencerOptions.STRONG
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, store)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, options)
}

func newCall(op, target, store, key string, size int) (call, func(), error) {
	value := bytes.Repeat([]byte("v"), size)
	switch op {
	case "grpc-nextid-weak", "grpc-nextid-strong":
		return grpcCall(target, "GetNextId", getNextIDRequest(store, key, op == "grpc-nextid-strong"))
	case "grpc-get":
		return grpcCall(target, "GetState", getStateRequest(store, key))
	case "grpc-save":
		return grpcCall(target, "SaveState", saveStateRequest(store, key, value))
	case "redis-get", "redis-save":
		client := redis.NewClient(&redis.Options{Addr: target, PoolSize: 32})
		if err := client.HSet(context.Background(), key, "data", value).Err(); err != nil {
			return nil, nil, err
		}
		if op == "redis-get" {
			return func(ctx context.Context) error { return client.HGet(ctx, key, "data").Err() },
				func() { client.Close() }, nil
		}
		return func(ctx context.Context) error { return client.HSet(ctx, key, "data", value).Err() },
			func() { client.Close() }, nil
	case "pg-get", "pg-save":
		pool, err := pgxpool.New(context.Background(), target+" pool_max_conns=16")
		if err != nil {
			return nil, nil, err
		}
		ctx := context.Background()
		if _, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS bench_direct (key TEXT PRIMARY KEY, value BYTEA)"); err != nil {
			return nil, nil, err
		}
		upsert := "INSERT INTO bench_direct (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
		if _, err := pool.Exec(ctx, upsert, key, value); err != nil {
			return nil, nil, err
		}
		if op == "pg-get" {
			return func(ctx context.Context) error {
				var got []byte
				return pool.QueryRow(ctx, "SELECT value FROM bench_direct WHERE key = $1", key).Scan(&got)
			}, pool.Close, nil
		}
		return func(ctx context.Context) error {
			_, err := pool.Exec(ctx, upsert, key, value)
			return err
		}, pool.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown -op %q", op)
}
