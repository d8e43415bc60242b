package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/store"
)

// clientOptions are the flags every client command shares.
type clientOptions struct {
	natsURL string
	json    bool
	timeout time.Duration
	sec     natsSecurity
}

func (o *clientOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.natsURL, "nats-url", nats.DefaultURL, "NATS server URL (comma-separated for a cluster)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print machine-readable JSON on stdout")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	o.sec.register(cmd.Flags())
}

// client is an open connection for one command.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (o *clientOptions) connect(name string) (*client, error) {
	sec, err := o.sec.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(o.natsURL, append([]nats.Option{
		nats.Name("contactstop " + name),
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(5),
	}, sec...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", o.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &client{nc: nc, js: js}, nil
}

func (c *client) Close() { c.nc.Close() }

// openStore opens the state store without changing its configuration when
// the buckets exist (so a client never resizes what serve set up).
func (c *client) openStore(ctx context.Context) (*store.KV, error) {
	st, err := store.Open(ctx, c.js, store.Config{KeepExisting: true})
	if err != nil {
		return nil, fmt.Errorf("open store (is contactstop serve or a NATS server with JetStream running?): %w", err)
	}
	return st, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
