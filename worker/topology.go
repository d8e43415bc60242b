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
	// DuplicateWindow is JetStream's deduplication window on the results
	// and dead-letter streams, which only the worker writes: a result
	// published again with the same Nats-Msg-Id within it is dropped.
	// Default 2m. The streams publishers write (requests, bulk requests,
	// emergencies) keep none: a tenant's Nats-Msg-Id could otherwise drop
	// another tenant's request; the worker's durable outcomes make a
	// request stored twice harmless (the second is answered from the
	// record, with no new result).
	DuplicateWindow time.Duration
	// MaxAge is how long requests and results are kept. Default 7 days.
	// Dead letters are kept until removed by an operator.
	MaxAge time.Duration
	// MaxBytes bounds each stream's storage. When the requests or bulk
	// stream is full, publishers are refused (nothing stored is dropped);
	// the results and dead-letter streams drop their oldest messages. Size
	// it for MaxAge at the peak rate (a request stores about 300 bytes).
	// Default 1 GiB (about 3.5 million requests); the server reserves it
	// for each stream, so the streams together need 4–5 times it free.
	MaxBytes int64
	// The consumer settings; see Config.
	AckWait       time.Duration
	MaxAckPending int
	// Emergency also provisions the emergency lane: a stream capturing
	// emergency.broadcast.> (which must not overlap another stream's) and
	// its consumer.
	Emergency bool
}

// Limits of every message contactstop stores: a request larger than
// events.MaxMessageSize but within MaxRequestStored is stored and answered
// INVALID_REQUEST; a larger one is refused to its publisher by the stream.
const (
	MaxRequestStored = 2 * events.MaxMessageSize
	maxResultStored  = 16 << 10
)

func (c *TopologyConfig) setDefaults() {
	setDefault(&c.Replicas, DefaultReplicas)
	setDefault(&c.DuplicateWindow, DefaultDuplicateWindow)
	setDefault(&c.MaxAge, DefaultMaxAge)
	setDefault(&c.MaxBytes, DefaultStreamMaxBytes)
	setDefault(&c.AckWait, DefaultAckWait)
	setDefault(&c.MaxAckPending, DefaultMaxAckPending)
}

// noDedupSource is the empty stream every stream that publishers write
// sources from. A stream that sources another keeps no duplicate window
// unless one is set (nats-server: "zero means disabled"), and that is the
// point: shared by every tenant, a window would let one tenant's
// Nats-Msg-Id drop another's request. Nothing publishes to it.
const (
	StreamNoDedup  = "CONTACT_STOP_NO_DEDUP"
	subjectNoDedup = "contactstop.internal.nodedup"
)

// Provision creates or updates, idempotently, the requests, results and
// dead-letter streams and the worker's durable consumer. Every serve
// process calls it at start, and again whenever one of them is missing;
// concurrent calls with the same configuration are harmless.
func Provision(ctx context.Context, js jetstream.JetStream, cfg TopologyConfig) error {
	cfg.setDefaults()
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return fmt.Errorf("replicas must be 1 to 5, got %d", cfg.Replicas)
	}
	if cfg.DuplicateWindow > cfg.MaxAge {
		return errors.New("duplicate window must not exceed the streams' max age")
	}
	if cfg.MaxBytes < 1<<20 {
		return fmt.Errorf("stream max bytes must be at least 1 MiB, got %d", cfg.MaxBytes)
	}
	noDedup := []*jetstream.StreamSource{{Name: StreamNoDedup, FilterSubject: subjectNoDedup}}
	streams := []jetstream.StreamConfig{{
		Name:        StreamNoDedup,
		Description: "contactstop: empty on purpose; the streams publishers write source it so that they keep no duplicate window (docs/security.md)",
		Subjects:    []string{subjectNoDedup},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxMsgs:     1,
		MaxMsgSize:  1,
		Discard:     jetstream.DiscardNew,
	}, {
		Name:        events.StreamRequests,
		Description: "contactstop: requests to stop one contact",
		Subjects:    []string{events.SubjectStopRequested, events.SubjectStopRequested + ".>"},
		Sources:     noDedup,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  MaxRequestStored,
		Discard:     jetstream.DiscardNew,
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
		MaxBytes:   cfg.MaxBytes,
		MaxMsgSize: maxResultStored,
		Discard:    jetstream.DiscardOld,
		// The worker publishes a batch's results as one fast batch
		// (jspub.PublishBatch): one acknowledgement instead of one each.
		AllowBatchPublish: true,
	}, {
		Name:        events.StreamDeadLetter,
		Description: "contactstop: copies of requests that ended as INTERNAL_ERROR",
		Subjects:    []string{events.SubjectDeadLetter, events.SubjectDeadLetter + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  MaxRequestStored + 4<<10,
		Discard:     jetstream.DiscardOld,
	}, {
		Name:        events.StreamBulk,
		Description: "contactstop: bulk requests",
		Subjects:    []string{events.SubjectBulkRequested, events.SubjectBulkRequested + ".>"},
		Sources:     noDedup,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  MaxRequestStored,
		Discard:     jetstream.DiscardNew,
	}}
	if cfg.Emergency {
		streams = append(streams, jetstream.StreamConfig{
			Name:        events.StreamEmergency,
			Description: "contactstop: emergency broadcasts",
			Subjects:    []string{events.SubjectEmergencyBroadcast + ".>"},
			Sources:     noDedup,
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			MaxBytes:    cfg.MaxBytes,
			MaxMsgSize:  MaxRequestStored,
			Discard:     jetstream.DiscardNew,
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
