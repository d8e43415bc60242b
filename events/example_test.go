package events_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
)

// A publisher asks for one contact to be stopped. Publishing the same
// request again is safe: JetStream stores it once.
func ExamplePublisher_Stop() {
	// An in-process NATS server with JetStream, standing in for yours.
	dir, err := os.MkdirTemp("", "contactstop-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir,
	})
	if err != nil {
		panic(err)
	}
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		panic("nats-server not ready")
	}

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The worker creates this stream when it starts.
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       "CONTACT_STOP_REQUESTS",
		Subjects:   []string{events.SubjectStopRequested, events.SubjectStopRequested + ".>"},
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		panic(err)
	}

	pub := events.NewPublisher(js)
	req := events.StopRequest{
		RequestID:        "r-42",
		ContactID:        "c-1",
		InstanceID:       "acme-prod",
		DisconnectReason: "EMERGENCY",
	}
	receipt, err := pub.Stop(ctx, req, events.WithCorrelationID("ticket-1234"))
	if err != nil {
		panic(err)
	}
	msg, err := stream.GetMsg(ctx, receipt.Sequence)
	if err != nil {
		panic(err)
	}
	fmt.Println("subject:", msg.Subject)
	fmt.Println("msg id:", msg.Header.Get(events.HeaderMsgID))
	fmt.Println("sequence:", receipt.Sequence, "duplicate:", receipt.Duplicate)

	again, err := pub.Stop(ctx, req)
	if err != nil {
		panic(err)
	}
	fmt.Println("again, sequence:", again.Sequence, "duplicate:", again.Duplicate)

	// An invalid request is refused before anything is sent.
	_, err = pub.Stop(ctx, events.StopRequest{ContactID: "c-2", InstanceID: "acme.prod"})
	var invalid *events.ValidationError
	if errors.As(err, &invalid) {
		fmt.Println("refused:", invalid.Code, invalid.Field)
	}

	// Output:
	// subject: contact.stop.requested.acme-prod
	// msg id: acme-prod:r-42
	// sequence: 1 duplicate: false
	// again, sequence: 1 duplicate: true
	// refused: INVALID_PARAMETER instanceId
}

// The worker's side: decode a received body and check it against the subject
// it arrived on. A *ValidationError carries the reason code of the failure
// event.
func ExampleDecodeStopRequest() {
	subject := "contact.stop.requested.acme-prod"
	body := []byte(`{"requestId":"r-43","contactId":"c-1","instanceId":"globex"}`)

	req, err := events.DecodeStopRequest(body)
	if err == nil {
		err = req.CheckSubject(subject)
	}
	var invalid *events.ValidationError
	if errors.As(err, &invalid) {
		fmt.Println(invalid.Code, "retryable:", invalid.Code.Retryable())
		fmt.Println(invalid)
	}

	// Output:
	// INVALID_PARAMETER retryable: false
	// instanceId: is "globex" but the message was published for instance "acme-prod"
}
