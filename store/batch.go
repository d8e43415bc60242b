package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of the batched operations.
const (
	// batchReadKeys is how many keys one batched read asks for (the server
	// answers at most 1024 messages per request).
	batchReadKeys = 256
	// opTimeout bounds one batched read and the wait for each write's
	// acknowledgement when the context has no earlier deadline.
	opTimeout = 5 * time.Second
)

// EndOutcome is what EndContacts did for one contact: exactly what
// EndContact would have returned for it.
type EndOutcome struct {
	Result EndContactResult
	Err    error
}

// EndContacts ends many contacts at once, with EndContact's semantics and
// errors for each, and returns one outcome per parameter, in order. It
// reads every contact without a usable Known record in one request per 256
// (a JetStream direct get of the last message of many subjects), publishes
// every compare-and-set write without waiting in between, then waits for
// their acknowledgements: three round trips for the whole batch rather
// than two per contact. A write that meets a newer revision, and a second
// request for a contact already in the batch, fall back to EndContact,
// which re-reads and decides again. An error for one contact (a timeout, a
// lost connection) is its outcome alone; the caller may retry it with
// EndContact, which is safe whatever the first attempt did.
func (s *KV) EndContacts(ctx context.Context, ps []EndContactParams) []EndOutcome {
	outs := make([]EndOutcome, len(ps))
	keys := make([]string, len(ps))
	first := make(map[string]int, len(ps))
	var again, toRead []int
	for i, p := range ps {
		if err := p.validate(); err != nil {
			outs[i].Err = err
			continue
		}
		keys[i] = ContactKey(p.InstanceID, p.ContactID)
		if _, dup := first[keys[i]]; dup {
			again = append(again, i)
			continue
		}
		first[keys[i]] = i
		if !p.usableKnown() {
			toRead = append(toRead, i)
		}
	}

	current := make(map[int]Contact, len(first))
	if len(toRead) > 0 {
		readKeys := make([]string, len(toRead))
		for j, i := range toRead {
			readKeys[j] = keys[i]
		}
		found, err := s.lastContacts(ctx, readKeys)
		for _, i := range toRead {
			p := ps[i]
			switch e, ok := found[keys[i]]; {
			case err != nil:
				outs[i].Err = fmt.Errorf("store: get contact %s/%q: %w", p.InstanceID, p.ContactID, err)
			case !ok:
				outs[i].Err = fmt.Errorf("%w: %s/%q", ErrContactNotFound, p.InstanceID, p.ContactID)
			default:
				if current[i], err = decodeContact(p.InstanceID, p.ContactID, e.data, e.rev); err != nil {
					outs[i].Err = err
				}
			}
		}
	}

	type write struct {
		i   int
		res EndContactResult
		rev uint64
	}
	writes := make([]write, 0, len(first))
	msgs := make([]*nats.Msg, 0, len(first))
	for i, p := range ps {
		if outs[i].Err != nil || keys[i] == "" || first[keys[i]] != i {
			continue
		}
		c, ok := current[i]
		if !ok {
			c = *p.Known
		}
		res, data, done, err := decideEnd(c, p, s.endTime(p))
		if done || err != nil {
			outs[i] = EndOutcome{Result: res, Err: err}
			continue
		}
		msg := &nats.Msg{Subject: s.contactsPrefix + keys[i], Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(c.Revision, 10))
		msgs = append(msgs, msg)
		writes = append(writes, write{i: i, res: res, rev: c.Revision})
	}

	var conflicts []int
	for k, ack := range s.pub.Publish(ctx, msgs, opTimeout) {
		w := writes[k]
		p := ps[w.i]
		switch {
		case ack.Err == nil:
			w.res.Contact.Revision = ack.Sequence
			outs[w.i].Result = w.res
		case revisionMismatch(ack.Err):
			conflicts = append(conflicts, w.i)
		default:
			outs[w.i].Err = fmt.Errorf("store: end contact %s/%q at revision %d: %w", p.InstanceID, p.ContactID, w.rev, ack.Err)
		}
	}
	// Rare: another writer changed the contact since it was read, or the
	// batch held two requests for one contact.
	for _, i := range slices.Concat(conflicts, again) {
		outs[i].Result, outs[i].Err = s.EndContact(ctx, ps[i])
	}
	return outs
}

// revisionMismatch reports whether a write failed its expected-revision
// check (the codes differ between single servers and clusters).
func revisionMismatch(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// lastEntry is the latest record of a key.
type lastEntry struct {
	data []byte
	rev  uint64
}

// lastContacts reads the latest record of each key of the contacts bucket,
// 256 keys per request. Keys without a record, or whose latest record is a
// delete or purge marker, are absent from the result.
func (s *KV) lastContacts(ctx context.Context, keys []string) (map[string]lastEntry, error) {
	found := make(map[string]lastEntry, len(keys))
	for chunk := range slices.Chunk(keys, batchReadKeys) {
		if err := s.multiLast(ctx, chunk, found); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// multiLast asks the contacts stream for the last message of each key's
// subject in one direct-get request and adds the answers to found. The
// server sends one message per subject that has one, then an end-of-batch
// status (204), or only a 404 when none has.
func (s *KV) multiLast(ctx context.Context, keys []string, found map[string]lastEntry) error {
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = s.contactsPrefix + k
	}
	body, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{subjects})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// At most one answer per key and the end-of-batch status.
	inbox, answers, release, err := s.replies.Open(len(keys) + 1)
	if err != nil {
		return fmt.Errorf("batched read: %w", err)
	}
	defer release()
	if err := s.js.Conn().PublishRequest("$JS.API.DIRECT.GET."+s.contactsStream, inbox, body); err != nil {
		return fmt.Errorf("batched read: %w", err)
	}
	for {
		var msg *nats.Msg
		select {
		case msg = <-answers:
		case <-ctx.Done():
			return fmt.Errorf("batched read: %w", ctx.Err())
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
			subject := msg.Header.Get(jetstream.SubjectHeader)
			key, ok := strings.CutPrefix(subject, s.contactsPrefix)
			rev, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("batched read: unexpected answer for subject %q, sequence %q",
					subject, msg.Header.Get(jetstream.SequenceHeader))
			}
			if op := msg.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
				continue
			}
			found[key] = lastEntry{data: msg.Data, rev: rev}
		case "204", "404": // end of batch; nothing found
			return nil
		default:
			return fmt.Errorf("batched read: server answered %s %s", status, msg.Header.Get("Description"))
		}
	}
}
