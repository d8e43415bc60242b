package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
)

// TopologyConfig sizes the streams and the consumer.
type TopologyConfig struct {
	// Replicas of each stream (1 on a single server, 3 on a cluster).
	// Default 1.
	Replicas int
	// DuplicateWindow is JetStream's deduplication window on the requests
	// and results streams: a request or result published again with the
	// same Nats-Msg-Id within it is dropped. Default 2m.
	DuplicateWindow time.Duration
	// MaxAge is how long requests and results are kept. Default 7 days.
	// Dead letters are kept until removed by an operator.
	MaxAge time.Duration
	// The consumer settings; see Config.
	AckWait       time.Duration
	MaxAckPending int
	// Emergency also provisions the emergency lane: a stream capturing
	// emergency.broadcast.> (which must not overlap another stream's) and
	// its consumer.
	Emergency bool
}

func (c *TopologyConfig) setDefaults() {
	setDefault(&c.Replicas, DefaultReplicas)
	setDefault(&c.DuplicateWindow, DefaultDuplicateWindow)
	setDefault(&c.MaxAge, DefaultMaxAge)
	setDefault(&c.AckWait, DefaultAckWait)
	setDefault(&c.MaxAckPending, DefaultMaxAckPending)
}

// Provision creates or updates, idempotently, the requests, results and
// dead-letter streams and the worker's durable consumer. Every serve
// process calls it at start; concurrent calls with the same configuration
// are harmless.
func Provision(ctx context.Context, js jetstream.JetStream, cfg TopologyConfig) error {
	cfg.setDefaults()
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return fmt.Errorf("replicas must be 1 to 5, got %d", cfg.Replicas)
	}
	if cfg.DuplicateWindow > cfg.MaxAge {
		return errors.New("duplicate window must not exceed the streams' max age")
	}
	streams := []jetstream.StreamConfig{{
		Name:        events.StreamRequests,
		Description: "contactstop: requests to stop one contact",
		Subjects:    []string{events.SubjectStopRequested, events.SubjectStopRequested + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
		// No MaxMsgSize below the server's max_payload: an oversized
		// request must reach the worker to be answered INVALID_REQUEST.
	}, {
		Name:        events.StreamResults,
		Description: "contactstop: contact.stopped, contact.stop.failed and contact.stop.bulk.completed results",
		Subjects: []string{events.SubjectStopped + ".>", events.SubjectStopFailed, events.SubjectStopFailed + ".>",
			events.SubjectBulkCompleted + ".>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.DuplicateWindow,
		MaxAge:     cfg.MaxAge,
	}, {
		Name:        events.StreamDeadLetter,
		Description: "contactstop: copies of requests that ended as INTERNAL_ERROR",
		Subjects:    []string{events.SubjectDeadLetter, events.SubjectDeadLetter + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
	}}
	streams = append(streams, jetstream.StreamConfig{
		Name:        events.StreamBulk,
		Description: "contactstop: bulk requests",
		Subjects:    []string{events.SubjectBulkRequested},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
	})
	if cfg.Emergency {
		streams = append(streams, jetstream.StreamConfig{
			Name:        events.StreamEmergency,
			Description: "contactstop: emergency broadcasts",
			Subjects:    []string{events.SubjectEmergencyBroadcast + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    cfg.Replicas,
			Duplicates:  cfg.DuplicateWindow,
			MaxAge:      cfg.MaxAge,
		})
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
	}
	// A bulk request is worked on by one runner at a time, which keeps it
	// in progress; a few may wait in each process's buffer.
	bulkConsumers := map[string]string{events.StreamBulk: events.ConsumerBulk}
	if cfg.Emergency {
		bulkConsumers[events.StreamEmergency] = events.ConsumerEmergency
	}
	for stream, name := range bulkConsumers {
		_, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "contactstop bulk runners",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: 256,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("provision consumer %s: %w", name, err)
		}
	}
	_, err := js.CreateOrUpdateConsumer(ctx, events.StreamRequests, jetstream.ConsumerConfig{
		Durable:     events.ConsumerRequests,
		Description: "contactstop worker pool",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     cfg.AckWait,
		// The worker counts deliveries itself and ends a request as
		// INTERNAL_ERROR after its own limit; the server must never stop
		// redelivering, or a crash during the last attempt would lose it.
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("provision consumer %s: %w", events.ConsumerRequests, err)
	}
	return nil
}
