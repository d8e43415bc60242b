package events

// Names of the JetStream streams and durable consumers contactstop owns. A
// consumer of results reads StreamResults; nothing but the worker should
// write it. The worker creates them all on start (worker.Provision).
const (
	// StreamRequests stores contact.stop.requested and
	// contact.stop.requested.<instanceId>.
	StreamRequests = "CONTACT_STOP_REQUESTS"
	// StreamResults stores contact.stopped.>, contact.stop.failed[.>] and
	// contact.stop.bulk.completed.>.
	StreamResults = "CONTACT_STOP_RESULTS"
	// StreamDeadLetter stores contact.stop.deadletter[.>]: copies of
	// requests answered INTERNAL_ERROR.
	StreamDeadLetter = "CONTACT_STOP_DEADLETTER"
	// StreamBulk stores bulk requests.
	StreamBulk = "CONTACT_STOP_BULK"
	// StreamEmergency stores emergency.broadcast.> (when the emergency
	// handler is on).
	StreamEmergency = "CONTACT_STOP_EMERGENCY"

	// ConsumerRequests is the worker pool's durable consumer on
	// StreamRequests.
	ConsumerRequests = "contactstop-worker"
	// ConsumerBulk and ConsumerEmergency are the bulk runners' durable
	// consumers on StreamBulk and StreamEmergency.
	ConsumerBulk      = "contactstop-bulk"
	ConsumerEmergency = "contactstop-emergency"
)
