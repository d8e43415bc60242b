package amazonconnect

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/contactstop/contactstop/store"
)

// Amazon Connect contact events.
//
// Amazon Connect cannot list the contacts waiting in a queue, but it
// reports every contact's changes as EventBridge events (detail-type
// "Amazon Connect Contact Event", source "aws.connect"), which an
// EventBridge API destination posts to contactstop one by one
// (POST /ingest/amazon-connect). The shapes are those of the Amazon Connect
// Administrator Guide, "Amazon Connect contact events"
// (https://docs.aws.amazon.com/connect/latest/adminguide/contact-events.html),
// and of the EventBridge User Guide, "Amazon EventBridge events"; testdata/
// holds the guide's samples. The guide warns that new fields and event
// types appear: unknown fields are ignored and unknown event types change
// nothing.

// The envelope of an Amazon Connect contact event.
const (
	EventSource     = "aws.connect"
	EventDetailType = "Amazon Connect Contact Event"
)

// Event types (detail.eventType). Those that move a contact to another
// state are mapped by Event.Change; the others change nothing.
const (
	EventInitiated          = "INITIATED"
	EventConnectedToSystem  = "CONNECTED_TO_SYSTEM"
	EventQueued             = "QUEUED"
	EventConnectedToAgent   = "CONNECTED_TO_AGENT"
	EventDisconnected       = "DISCONNECTED"
	EventContactDataUpdated = "CONTACT_DATA_UPDATED"
	EventCompleted          = "COMPLETED"
	EventPaused             = "PAUSED"
	EventResumed            = "RESUMED"
)

// ErrEventInvalid is wrapped by the errors of DecodeEvent and Event.Change:
// the event is not an Amazon Connect contact event, or one whose fields
// cannot be read. It is permanent: the same event fails the same way.
var ErrEventInvalid = errors.New("amazonconnect: invalid contact event")

// Event is one EventBridge event carrying an Amazon Connect contact event.
// Member names match case-insensitively, as the guide's own samples spell
// them both ways (contactId, ContactId).
type Event struct {
	Version    string      `json:"version"`
	ID         string      `json:"id"`
	DetailType string      `json:"detail-type"`
	Source     string      `json:"source"`
	Account    string      `json:"account"`
	Time       string      `json:"time"`
	Region     string      `json:"region"`
	Resources  []string    `json:"resources"`
	Detail     EventDetail `json:"detail"`
}

// EventDetail is the contact event itself, with the fields contactstop
// reads. Timestamps are kept as sent (yyyy-MM-dd'T'HH:mm:ss.SSS'Z') and
// parsed by Change, which names the field that does not parse.
type EventDetail struct {
	EventType                  string          `json:"eventType"`
	ContactID                  string          `json:"contactId"`
	InitialContactID           string          `json:"initialContactId"`
	PreviousContactID          string          `json:"previousContactId"`
	RelatedContactID           string          `json:"relatedContactId"`
	Channel                    string          `json:"channel"`
	InstanceArn                string          `json:"instanceArn"`
	InitiationMethod           string          `json:"initiationMethod"`
	InitiationTimestamp        string          `json:"initiationTimestamp"`
	ConnectedToSystemTimestamp string          `json:"connectedToSystemTimestamp"`
	DisconnectTimestamp        string          `json:"disconnectTimestamp"`
	QueueInfo                  *EventQueueInfo `json:"queueInfo"`
	AgentInfo                  *EventAgentInfo `json:"agentInfo"`
	UpdatedProperties          []string        `json:"updatedProperties"`
}

// EventQueueInfo is the queue a contact was placed in.
type EventQueueInfo struct {
	QueueArn         string `json:"queueArn"`
	QueueType        string `json:"queueType"`
	EnqueueTimestamp string `json:"enqueueTimestamp"`
}

// EventAgentInfo is the agent a contact was connected to.
type EventAgentInfo struct {
	AgentArn                  string `json:"agentArn"`
	ConnectedToAgentTimestamp string `json:"connectedToAgentTimestamp"`
}

// DecodeEvent decodes one EventBridge event and checks that it is an
// Amazon Connect contact event (source, detail-type, and an eventType). Its
// errors wrap ErrEventInvalid.
func DecodeEvent(data []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: not an EventBridge event in JSON: %w", ErrEventInvalid, err)
	}
	if e.Source != EventSource || e.DetailType != EventDetailType {
		return nil, fmt.Errorf("%w: source %q, detail-type %q: want %q, %q", ErrEventInvalid,
			e.Source, e.DetailType, EventSource, EventDetailType)
	}
	if e.Detail.EventType == "" {
		return nil, fmt.Errorf("%w: event %q: detail.eventType is missing", ErrEventInvalid, e.ID)
	}
	return &e, nil
}

// EventChange is what one contact event says of its contact.
type EventChange struct {
	// Applies is false for event types that move no contact to another
	// state (CONTACT_DATA_UPDATED, COMPLETED, PAUSED, … and types added
	// later): such an event changes nothing, and the other fields are
	// zero.
	Applies bool
	// ConnectInstanceID is the Amazon Connect instance of the contact:
	// the last path element of detail.instanceArn.
	ConnectInstanceID string
	// Contact is the change for the store. Its InstanceID is empty: it
	// is the contactstop instance bound to ConnectInstanceID, which the
	// caller resolves.
	Contact store.ContactEvent
}

// eventStates maps the event types that change a contact's state.
var eventStates = map[string]store.State{
	EventInitiated:         store.StateInitiated,
	EventConnectedToSystem: store.StateInitiated,
	EventQueued:            store.StateQueued,
	EventConnectedToAgent:  store.StateConnected,
	EventDisconnected:      store.StateEnded,
}

// eventChannels maps Amazon Connect channels, compared case-insensitively
// (the guide writes both VOICE and Voice).
var eventChannels = map[string]store.Channel{
	"VOICE": store.ChannelVoice,
	"CHAT":  store.ChannelChat,
	"TASK":  store.ChannelWorkItem,
	"EMAIL": store.ChannelEmail,
}

// Change maps the event to the store (SPEC, Platforms):
//
//   - INITIATED and CONNECTED_TO_SYSTEM → INITIATED;
//   - QUEUED → QUEUED, with queueId the queue id at the end of
//     queueInfo.queueArn and enqueuedAt queueInfo.enqueueTimestamp;
//   - CONNECTED_TO_AGENT → CONNECTED;
//   - DISCONNECTED → ENDED, disconnected at detail.disconnectTimestamp;
//   - channels VOICE, CHAT, TASK, EMAIL → VOICE, CHAT, WORK_ITEM, EMAIL.
//
// Any other event type changes nothing (Applies false). The queue of an
// event other than QUEUED is recorded when its queueInfo can be read and
// ignored otherwise.
//
// The change's time, which orders a contact's events, is the envelope's
// time, refined by the detail's own timestamp of the transition (see
// eventTime). Its errors wrap ErrEventInvalid and name the field.
func (e *Event) Change() (EventChange, error) {
	d := &e.Detail
	state, ok := eventStates[d.EventType]
	if !ok {
		return EventChange{}, nil
	}
	fail := func(format string, args ...any) (EventChange, error) {
		return EventChange{}, fmt.Errorf("%w: %s event %q: %s", ErrEventInvalid, d.EventType, e.ID, fmt.Sprintf(format, args...))
	}
	if d.ContactID == "" {
		return fail("detail.contactId is missing")
	}
	connectID, ok := eventResourceID(d.InstanceArn, "instance")
	if !ok {
		return fail("detail.instanceArn %q is not an Amazon Connect instance ARN (arn:…:instance/<id>)", d.InstanceArn)
	}
	channel, ok := eventChannels[strings.ToUpper(d.Channel)]
	if !ok {
		return fail("detail.channel %q is not one of VOICE, CHAT, TASK, EMAIL", d.Channel)
	}
	envelope, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		return fail("time %q is not an RFC 3339 time", e.Time)
	}
	c := store.ContactEvent{ContactID: d.ContactID, State: state, Channel: channel}
	if q := d.QueueInfo; q != nil {
		queueID, okID := eventResourceID(q.QueueArn, "queue")
		enqueued, errAt := eventTimestamp(q.EnqueueTimestamp)
		switch {
		case state != store.StateQueued:
			// Not needed for the state: kept when readable.
			if okID {
				c.QueueID = queueID
				if errAt == nil {
					c.EnqueuedAt = enqueued
				}
			}
		case !okID:
			return fail("detail.queueInfo.queueArn %q is not an Amazon Connect queue ARN (arn:…:instance/<id>/queue/<id>)", q.QueueArn)
		case errAt != nil:
			return fail("detail.queueInfo.enqueueTimestamp %q: %v", q.EnqueueTimestamp, errAt)
		default:
			c.QueueID, c.EnqueuedAt = queueID, enqueued
		}
	}
	if state == store.StateQueued && c.QueueID == "" {
		return fail("detail.queueInfo.queueArn is missing: a queued contact's queue is required")
	}
	var transition string // the detail's timestamp of this event's transition
	switch d.EventType {
	case EventInitiated:
		transition = d.InitiationTimestamp
	case EventConnectedToSystem:
		transition = d.ConnectedToSystemTimestamp
	case EventQueued:
		transition = d.QueueInfo.EnqueueTimestamp // present: checked above
	case EventConnectedToAgent:
		if d.AgentInfo != nil {
			transition = d.AgentInfo.ConnectedToAgentTimestamp
		}
	case EventDisconnected:
		if d.DisconnectTimestamp != "" {
			at, err := eventTimestamp(d.DisconnectTimestamp)
			if err != nil {
				return fail("detail.disconnectTimestamp %q: %v", d.DisconnectTimestamp, err)
			}
			c.DisconnectedAt = at
		}
		transition = d.DisconnectTimestamp
	}
	c.At = eventTime(envelope, transition)
	return EventChange{Applies: true, ConnectInstanceID: connectID, Contact: c}, nil
}

// eventTime is the time that orders a contact's events: the envelope's
// time, which every event has and which comes from one clock. It is whole
// seconds, though, and a contact often goes through several states within
// one (INITIATED, then QUEUED as soon as its flow transfers it): within
// the envelope's second, the detail's own timestamp of the transition
// (initiationTimestamp, connectedToSystemTimestamp, enqueueTimestamp,
// connectedToAgentTimestamp, disconnectTimestamp: milliseconds) refines it.
// A detail timestamp outside that second is not used: the guide shows
// them stale (an enqueueTimestamp carried by later events), placeholders
// (1970-01-01T00:00:00.001Z) or from other legs of a transfer, while the
// envelope's time is always the event's. Events still timed alike are
// ordered by the contact's lifecycle (store.ApplyContactEvent).
func eventTime(envelope time.Time, transition string) time.Time {
	envelope = envelope.UTC()
	if envelope.Nanosecond() != 0 || transition == "" {
		return envelope
	}
	t, err := eventTimestamp(transition)
	if err != nil || t.IsZero() || !t.Truncate(time.Second).Equal(envelope) {
		return envelope
	}
	return t
}

// eventTimestamp parses a detail timestamp (yyyy-MM-dd'T'HH:mm:ss.SSS'Z',
// or any RFC 3339 time). A time before 2000 is the zero time: the guide's
// samples write 1970-01-01T00:00:00.001Z for "not yet".
func eventTimestamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 time")
	}
	if t.Year() < 2000 {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}

// eventResourceIDRe matches an Amazon Connect resource id (a UUID, for
// instances, queues and agents).
var eventResourceIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// eventResourceID returns the id at the end of an Amazon Connect ARN whose
// resource is "instance/<id>" (kind "instance") or
// "instance/<id>/queue/<id>" (kind "queue"). An agent's own queue
// (instance/<id>/queue/agent/<agent id>) has the queue id
// "agent/<agent id>". Only the resource part is read: the guide's own
// samples write arn:aws::connect:… .
func eventResourceID(arn, kind string) (string, bool) {
	if !strings.HasPrefix(arn, "arn:") {
		return "", false
	}
	parts := strings.Split(arn[strings.LastIndexByte(arn, ':')+1:], "/")
	for _, p := range parts[1:] {
		if !eventResourceIDRe.MatchString(p) {
			return "", false
		}
	}
	switch {
	case parts[0] != "instance":
		return "", false
	case kind == "instance" && len(parts) == 2:
		return parts[1], true
	case kind == "queue" && len(parts) == 4 && parts[2] == "queue":
		return parts[3], true
	case kind == "queue" && len(parts) == 5 && parts[2] == "queue" && parts[3] == "agent":
		return "agent/" + parts[4], true
	}
	return "", false
}
