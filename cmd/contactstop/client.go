package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/store"
)

// defaultNATSURL is where client commands look for NATS by default.
const defaultNATSURL = nats.DefaultURL

// clientOptions are the flags every client command shares.
type clientOptions struct {
	natsURL string
	json    bool
	timeout time.Duration
	sec     natsSecurity
}

func (o *clientOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.natsURL, "nats-url", defaultNATSURL, "NATS server URL (comma-separated for a cluster)")
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
	if err := checkNATSURL(o.natsURL); err != nil {
		return nil, err
	}
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

// orderedInactive is how long the server keeps a client command's ordered
// consumer after its last pull, should the command die before deleting it.
const orderedInactive = 30 * time.Second

// deleteOrdered deletes an ordered consumer a command is done with, so that
// client commands leave no consumers behind (the inactivity threshold reaps
// one whose command died).
func deleteOrdered(js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if info := cons.CachedInfo(); info != nil && info.Name != "" {
		_ = js.DeleteConsumer(ctx, stream, info.Name)
	}
}
