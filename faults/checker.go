package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// Expect is what the scenario knows that the streams cannot tell.
type Expect struct {
	// Instances whose contact records are read. Every instance a request
	// or a bulk request named should be listed.
	Instances []string
	// RepublishedAfterWindow holds the requests that the publisher published
	// again after the requests stream's duplicate window (and after their
	// first result was stored). Such a request legitimately gets a second,
	// identical contact.stopped (README "Guarantees, and their limits";
	// docs/design.md "Known limits" #1): those are counted as
	// ReplayedAfterWindow instead of Duplicated, and only for these requests.
	RepublishedAfterWindow map[RequestKey]bool
	// Bulks are the bulk requests the scenario published, with the number of
	// contacts each must match (and stop).
	Bulks []BulkExpect
}

// BulkExpect is one bulk request and how many contacts it must stop.
type BulkExpect struct {
	InstanceID, BulkID string
	Matched            int
}

// RequestKey identifies a request: its instance and its identity (the
// requestId, else the Nats-Msg-Id, else "seq-<stream sequence>", as the
// worker computes it; "<bulkId>/<contactId>" for a contact of a bulk).
type RequestKey struct {
	Instance, ID string
}

func (k RequestKey) String() string { return k.Instance + ":" + k.ID }

// Report is what Check found. Every count except the documented categories
// (ReplayedAfterWindow, EndedByInternalError) must be zero; Problems lists
// examples of each.
type Report struct {
	// What went in.
	StoredRequests int // request messages in the requests stream
	Requests       int // distinct request identities among them
	BulkRequests   int // bulk request messages
	BulkItems      int // contacts that stored bulk requests matched
	Contacts       int // contact records read

	// What came out.
	Results        int // result messages (contact.stopped and contact.stop.failed)
	Stopped        int // contact.stopped messages
	Failed         int // contact.stop.failed messages
	FailedByReason map[string]int
	Completions    int // contact.stop.bulk.completed messages

	// Violations of the guarantees.
	Lost       int // requests (and bulk contacts) without a result
	Duplicated int // requests with more than one stored result, outside the documented limit
	// DoubleTerminated counts contacts with contact.stopped results from two
	// different requests, or ENDED by a request other than the one whose
	// contact.stopped names them.
	DoubleTerminated int
	// Phantom counts contact.stopped results whose contact is not ENDED by
	// that request, results of requests that were never stored, and
	// contacts ENDED by a request whose result is a failure other than
	// INTERNAL_ERROR.
	Phantom int
	// WronglyEnded counts ENDED contacts that no stored request (or bulk
	// request whose filter matches them) targeted.
	WronglyEnded int
	// BulkCompletionProblems counts bulk requests without exactly one
	// completion event, or whose counts differ from Expect.Bulks.
	BulkCompletionProblems int

	// Documented limits, counted apart.
	//
	// ReplayedAfterWindow: requests in Expect.RepublishedAfterWindow that
	// were stored again and got one more identical result per stored copy.
	ReplayedAfterWindow int
	// EndedByInternalError: contacts ENDED by a request whose only result is
	// INTERNAL_ERROR (docs/design.md "Known limits" #3).
	EndedByInternalError int

	// Problems has up to 50 examples of violations, one line each; Notes
	// up to 50 examples of the documented categories.
	Problems []string
	Notes    []string
}

// Violations is the sum of every count that must be zero.
func (r *Report) Violations() int {
	return r.Lost + r.Duplicated + r.DoubleTerminated + r.Phantom + r.WronglyEnded + r.BulkCompletionProblems
}

// String summarises the report on one line.
func (r *Report) String() string {
	reasons := make([]string, 0, len(r.FailedByReason))
	for code, n := range r.FailedByReason {
		reasons = append(reasons, code+"="+strconv.Itoa(n))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("requests %d (stored %d), bulk requests %d (contacts %d), contacts %d; results %d: stopped %d, failed %d %v, completions %d; "+
		"LOST %d, DUPLICATED %d, DOUBLE-TERMINATED %d, PHANTOM %d, WRONGLY-ENDED %d, BULK-COMPLETION %d; "+
		"documented: replayed after window %d, ended by INTERNAL_ERROR %d",
		r.Requests, r.StoredRequests, r.BulkRequests, r.BulkItems, r.Contacts, r.Results, r.Stopped, r.Failed, reasons, r.Completions,
		r.Lost, r.Duplicated, r.DoubleTerminated, r.Phantom, r.WronglyEnded, r.BulkCompletionProblems,
		r.ReplayedAfterWindow, r.EndedByInternalError)
}

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < 50 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

func (r *Report) note(format string, args ...any) {
	if len(r.Notes) < 50 {
		r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
	}
}

// storedRequest is one request identity in the requests stream.
type storedRequest struct {
	contactID string
	copies    int
	seqs      []uint64
}

// storedBulk is one bulk request identity in the bulk stream.
type storedBulk struct {
	filter events.BulkFilter
	copies int
}

// storedResult is one result message.
type storedResult struct {
	seq     uint64
	at      time.Time
	stopped *events.Stopped
	failed  *events.StopFailed
}

func (s storedResult) contactID() string {
	if s.stopped != nil {
		return s.stopped.ContactID
	}
	return s.failed.ContactID
}

type contactKey struct{ instance, contactID string }

// Check reads the requests, bulk requests and results streams whole, and
// every contact of exp.Instances, and reports what it found. Call it once
// the worker is quiescent (WaitQuiescent). It returns an error only when it
// could not read something; what it read is judged in the Report.
func Check(ctx context.Context, js jetstream.JetStream, exp Expect) (*Report, error) {
	rep := &Report{FailedByReason: map[string]int{}}

	requests := map[RequestKey]*storedRequest{}
	err := readStream(ctx, js, worker.StreamRequests, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		rep.StoredRequests++
		req, err := events.DecodeStopRequest(m.Data())
		if err != nil {
			// The suite publishes only valid requests.
			rep.problem("request seq %d is not a valid request (%v): the checker cannot judge it", md.Sequence.Stream, err)
			rep.Phantom++
			return nil
		}
		k := RequestKey{req.InstanceID, identity(req.RequestID, m.Headers().Get(events.HeaderMsgID), md.Sequence.Stream)}
		r := requests[k]
		if r == nil {
			r = &storedRequest{contactID: req.ContactID}
			requests[k] = r
		} else if r.contactID != req.ContactID {
			rep.problem("request %s stored for two contacts (%q and %q): the suite never does that", k, r.contactID, req.ContactID)
		}
		r.copies++
		r.seqs = append(r.seqs, md.Sequence.Stream)
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Requests = len(requests)

	bulks := map[RequestKey]*storedBulk{}
	err = readStream(ctx, js, worker.StreamBulk, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		rep.BulkRequests++
		b, err := events.DecodeBulkRequest(m.Data())
		if err != nil {
			rep.problem("bulk request seq %d is not valid (%v): the checker cannot judge it", md.Sequence.Stream, err)
			rep.Phantom++
			return nil
		}
		k := RequestKey{b.InstanceID, identity(b.BulkID, m.Headers().Get(events.HeaderMsgID), md.Sequence.Stream)}
		if bulks[k] == nil {
			bulks[k] = &storedBulk{filter: b.Filter}
		}
		bulks[k].copies++
		return nil
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, err
	}

	results := map[RequestKey][]storedResult{}
	completions := map[RequestKey][]events.BulkCompleted{}
	err = readStream(ctx, js, worker.StreamResults, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		if strings.HasPrefix(m.Subject(), events.SubjectBulkCompleted+".") {
			rep.Completions++
			var c events.BulkCompleted
			if err := json.Unmarshal(m.Data(), &c); err != nil {
				rep.problem("completion seq %d unreadable: %v", md.Sequence.Stream, err)
				rep.BulkCompletionProblems++
				return nil
			}
			k := RequestKey{c.InstanceID, c.BulkID}
			completions[k] = append(completions[k], c)
			return nil
		}
		res, err := events.DecodeResult(m.Subject(), m.Data())
		if err != nil {
			rep.problem("result seq %d unreadable: %v", md.Sequence.Stream, err)
			rep.Phantom++
			return nil
		}
		rep.Results++
		sr := storedResult{seq: md.Sequence.Stream, at: md.Timestamp, stopped: res.Stopped, failed: res.Failed}
		var k RequestKey
		if res.Stopped != nil {
			rep.Stopped++
			k = RequestKey{res.Stopped.InstanceID, res.Stopped.RequestID}
		} else {
			rep.Failed++
			rep.FailedByReason[string(res.Failed.ReasonCode)]++
			k = RequestKey{res.Failed.InstanceID, res.Failed.RequestID}
		}
		results[k] = append(results[k], sr)
		return nil
	})
	if err != nil {
		return nil, err
	}

	contacts := map[contactKey]store.Contact{}
	if len(exp.Instances) > 0 {
		st, err := store.Open(ctx, js, store.Config{KeepExisting: true})
		if err != nil {
			return nil, fmt.Errorf("open the store: %w", err)
		}
		for _, inst := range exp.Instances {
			err := st.ListContacts(ctx, inst, func(c store.Contact) error {
				contacts[contactKey{c.InstanceID, c.ContactID}] = c
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("list the contacts of %s: %w", inst, err)
			}
		}
	}
	rep.Contacts = len(contacts)

	// The contacts each stored bulk request covers: those that matched its
	// filter before it ran (ENDED ones by their previous state).
	bulkItems := map[RequestKey]contactKey{} // item identity → contact
	for k, b := range bulks {
		for ck, c := range contacts {
			if ck.instance != k.Instance {
				continue
			}
			item := RequestKey{k.Instance, events.BulkItemRequestID(k.ID, c.ContactID)}
			ended := c.State == store.StateEnded
			switch {
			case ended && c.EndedBy == item.ID && matches(b.filter, c):
				bulkItems[item] = ck
			case !ended && matches(b.filter, c):
				// Still active though it matches: lost unless it has a result
				// (for example CONTACT_NOT_FOUND, which cannot be here).
				bulkItems[item] = ck
			}
		}
	}
	rep.BulkItems = len(bulkItems)

	// Every request and every bulk contact has exactly one result.
	expected := make(map[RequestKey]string, len(requests)+len(bulkItems)) // → contactID
	for k, r := range requests {
		expected[k] = r.contactID
	}
	for k, ck := range bulkItems {
		expected[k] = ck.contactID
	}
	for k, contactID := range expected {
		rs := results[k]
		switch {
		case len(rs) == 0:
			rep.Lost++
			rep.problem("LOST: request %s (contact %q) has no result", k, contactID)
		case len(rs) > 1:
			copies := 1
			if r := requests[k]; r != nil {
				copies = r.copies
			}
			if exp.RepublishedAfterWindow[k] && copies >= 2 && len(rs) <= copies && identical(rs) {
				rep.ReplayedAfterWindow++
				rep.note("replayed after the window: request %s stored %d times, %d identical results: %s", k, copies, len(rs), describe(rs))
				continue
			}
			rep.Duplicated++
			rep.problem("DUPLICATED: request %s has %d results (stored %d times): %s", k, len(rs), copies, describe(rs))
		}
		for _, r := range rs {
			if r.contactID() != contactID {
				rep.Phantom++
				rep.problem("PHANTOM: result seq %d of request %s names contact %q, the request %q", r.seq, k, r.contactID(), contactID)
			}
		}
	}
	for k, rs := range results {
		if _, ok := expected[k]; ok {
			continue
		}
		if bulks[k] != nil {
			// The bulk request's own answer: a failure with an empty
			// contactId. The suite publishes only valid bulk requests, so
			// any such answer means the bulk was given up.
			rep.BulkCompletionProblems++
			rep.problem("BULK: %s was answered as a whole: %s", k, describe(rs))
			continue
		}
		{
			rep.Phantom++
			rep.problem("PHANTOM: %d result(s) for request %s, which was never stored: %s", len(rs), k, describe(rs))
		}
	}

	// Contact by contact: who stopped it, who ended it.
	stoppedBy := map[contactKey][]string{}
	for k, rs := range results {
		for _, r := range rs {
			if r.stopped == nil {
				continue
			}
			ck := contactKey{k.Instance, r.stopped.ContactID}
			if !slices.Contains(stoppedBy[ck], k.ID) {
				stoppedBy[ck] = append(stoppedBy[ck], k.ID)
			}
		}
	}
	for ck, ids := range stoppedBy {
		c, ok := contacts[ck]
		switch {
		case len(ids) > 1:
			rep.DoubleTerminated++
			rep.problem("DOUBLE: contact %s/%q has contact.stopped from %d requests %q (endedBy %q)", ck.instance, ck.contactID, len(ids), ids, c.EndedBy)
		case !ok:
			rep.Phantom++
			rep.problem("PHANTOM: contact.stopped by %q for contact %s/%q, which does not exist", ids[0], ck.instance, ck.contactID)
		case c.State != store.StateEnded:
			rep.Phantom++
			rep.problem("PHANTOM: contact.stopped by %q but contact %s/%q is %s", ids[0], ck.instance, ck.contactID, c.State)
		case c.EndedBy != ids[0]:
			rep.DoubleTerminated++
			rep.problem("DOUBLE: contact %s/%q is ENDED by %q but contact.stopped names %q", ck.instance, ck.contactID, c.EndedBy, ids[0])
		}
	}
	for ck, c := range contacts {
		if c.State != store.StateEnded {
			continue
		}
		by := RequestKey{ck.instance, c.EndedBy}
		target, ok := expected[by]
		if !ok || target != ck.contactID {
			rep.WronglyEnded++
			rep.problem("WRONGLY ENDED: contact %s/%q is ENDED by %q, which no stored request for it has as identity", ck.instance, ck.contactID, c.EndedBy)
			continue
		}
		if len(stoppedBy[ck]) > 0 {
			continue // judged above
		}
		rs := results[by]
		if len(rs) == 0 {
			continue // counted as lost
		}
		internal := true
		for _, r := range rs {
			if r.failed == nil || r.failed.ReasonCode != events.ReasonInternalError {
				internal = false
			}
		}
		if internal {
			rep.EndedByInternalError++
			rep.note("ended by a request answered INTERNAL_ERROR: contact %s/%q is ENDED by %q, whose result is %s",
				ck.instance, ck.contactID, c.EndedBy, describe(rs))
			continue
		}
		rep.Phantom++
		rep.problem("PHANTOM: contact %s/%q is ENDED by %q, whose result is %s", ck.instance, ck.contactID, c.EndedBy, describe(rs))
	}

	// Bulk requests: one completion each, with the expected counts.
	for k := range bulks {
		cs := completions[k]
		if len(cs) != 1 {
			rep.BulkCompletionProblems++
			rep.problem("BULK: %s has %d completion events, want 1", k, len(cs))
		}
	}
	for k, cs := range completions {
		if bulks[k] == nil {
			rep.BulkCompletionProblems++
			rep.problem("BULK: %d completion event(s) for %s, which was never stored", len(cs), k)
		}
	}
	for _, b := range exp.Bulks {
		k := RequestKey{b.InstanceID, b.BulkID}
		cs := completions[k]
		if len(cs) == 0 {
			if bulks[k] == nil {
				rep.BulkCompletionProblems++
				rep.problem("BULK: %s was expected but never stored", k)
			}
			continue
		}
		c := cs[len(cs)-1]
		if c.Matched != b.Matched || c.Stopped != b.Matched || c.Failed != 0 {
			rep.BulkCompletionProblems++
			rep.problem("BULK: %s completed with matched %d, stopped %d, failed %d %v; want matched = stopped = %d",
				k, c.Matched, c.Stopped, c.Failed, c.ReasonCodes, b.Matched)
		}
		stopped := 0
		for item := range bulkItems {
			if item.Instance == k.Instance && strings.HasPrefix(item.ID, k.ID+"/") {
				for _, r := range results[item] {
					if r.stopped != nil {
						stopped++
						break
					}
				}
			}
		}
		if stopped != b.Matched {
			rep.BulkCompletionProblems++
			rep.problem("BULK: %s: %d contacts have a contact.stopped by it, want %d", k, stopped, b.Matched)
		}
	}
	sort.Strings(rep.Problems)
	sort.Strings(rep.Notes)
	return rep, nil
}

// identity is the worker's request identity: the id from the body, else the
// Nats-Msg-Id, else the stream sequence.
func identity(bodyID, msgID string, seq uint64) string {
	switch {
	case bodyID != "":
		return bodyID
	case msgID != "":
		return msgID
	}
	return "seq-" + strconv.FormatUint(seq, 10)
}

// matches reports whether the bulk filter selects the contact as it was
// before it ended.
func matches(f events.BulkFilter, c store.Contact) bool {
	state := c.State
	if state == store.StateEnded {
		state = c.PreviousState
	}
	if !slices.Contains(f.EffectiveStates(), string(state)) {
		return false
	}
	if len(f.QueueIDs) > 0 && !slices.Contains(f.QueueIDs, c.QueueID) {
		return false
	}
	if len(f.Channels) > 0 && !slices.Contains(f.Channels, string(c.Channel)) {
		return false
	}
	if f.EnqueuedBefore != nil && (c.EnqueuedAt.IsZero() || !c.EnqueuedAt.Before(*f.EnqueuedBefore)) {
		return false
	}
	return true
}

// identical reports whether every result says the same thing: equal
// contact.stopped bodies, or failures with the same reason code.
func identical(rs []storedResult) bool {
	for _, r := range rs[1:] {
		switch {
		case r.stopped != nil && rs[0].stopped != nil:
			if !reflect.DeepEqual(*r.stopped, *rs[0].stopped) {
				return false
			}
		case r.failed != nil && rs[0].failed != nil:
			if r.failed.ReasonCode != rs[0].failed.ReasonCode {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func describe(rs []storedResult) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.stopped != nil {
			parts[i] = fmt.Sprintf("[seq %d at %s: stopped %q (was %s, stoppedAt %s)]", r.seq, r.at.Format(time.RFC3339Nano),
				r.stopped.ContactID, r.stopped.PreviousState, r.stopped.StoppedAt.Format(time.RFC3339Nano))
		} else {
			parts[i] = fmt.Sprintf("[seq %d at %s: failed %q %s: %s]", r.seq, r.at.Format(time.RFC3339Nano),
				r.failed.ContactID, r.failed.ReasonCode, r.failed.Message)
		}
	}
	return strings.Join(parts, " ")
}

// readStream calls fn for every message of a stream, oldest first, through
// an ordered consumer. A stream that does not exist is reported as
// jetstream.ErrStreamNotFound. A failed fetch (right after a cluster fault,
// pull requests may meet "no responders" for a while) is retried with a new
// consumer from the next sequence, for up to a minute.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, fn func(jetstream.Msg, *jetstream.MsgMetadata) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("read stream %s: stream info: %w", stream, err)
	}
	remaining := s.CachedInfo().State.Msgs
	next := uint64(1) // the stream sequence to read next
	var cons jetstream.Consumer
	var lastErr error
	failures := 0
	for remaining > 0 {
		if lastErr != nil {
			if failures++; failures > 60 {
				return lastErr
			}
			cons = nil
			select {
			case <-ctx.Done():
				return errors.Join(lastErr, ctx.Err())
			case <-time.After(time.Second):
			}
		}
		if cons == nil {
			cons, err = js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
				DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next})
			if err != nil {
				lastErr = fmt.Errorf("read stream %s: ordered consumer from %d: %w", stream, next, err)
				continue
			}
		}
		// Never ask for more than is left: a fetch waits for a full batch.
		batch, err := cons.Fetch(int(min(1000, remaining)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			lastErr = fmt.Errorf("read stream %s: fetch from %d: %w", stream, next, err)
			continue
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read stream %s: %w", stream, err)
			}
			if md.Sequence.Stream < next {
				continue // already read
			}
			got++
			if err := fn(m, md); err != nil {
				return err
			}
			next, remaining = md.Sequence.Stream+1, md.NumPending
		}
		switch err := batch.Error(); {
		case err != nil:
			lastErr = fmt.Errorf("read stream %s: fetch from %d: %w", stream, next, err)
		case got == 0:
			lastErr = fmt.Errorf("read stream %s: no message within 10s from %d, %d left", stream, next, remaining)
		default:
			lastErr, failures = nil, 0
		}
	}
	return nil
}

// Backlog is the work the worker has not finished: undelivered and
// unacknowledged messages of its consumers, and the results stored so far.
type Backlog struct {
	Pending, AckPending         uint64 // contactstop-worker
	BulkPending, BulkAckPending uint64 // contactstop-bulk
	Results                     uint64 // messages in the results stream
}

func (b Backlog) idle() bool {
	return b.Pending == 0 && b.AckPending == 0 && b.BulkPending == 0 && b.BulkAckPending == 0
}

// ReadBacklog asks the server for the worker's backlog. The bulk consumer
// counts as empty when its stream does not exist.
func ReadBacklog(ctx context.Context, js jetstream.JetStream) (Backlog, error) {
	var b Backlog
	ci, err := consumerInfo(ctx, js, worker.StreamRequests, worker.ConsumerName)
	if err != nil {
		return b, err
	}
	b.Pending, b.AckPending = ci.NumPending, uint64(ci.NumAckPending)
	ci, err = consumerInfo(ctx, js, worker.StreamBulk, worker.BulkConsumerName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return b, err
	default:
		b.BulkPending, b.BulkAckPending = ci.NumPending, uint64(ci.NumAckPending)
	}
	s, err := js.Stream(ctx, worker.StreamResults)
	if err != nil {
		return b, err
	}
	b.Results = s.CachedInfo().State.Msgs
	return b, nil
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// WaitQuiescent waits until the worker's consumers have nothing pending or
// unacknowledged and the results stream has not grown, continuously for
// hold. It returns the last backlog read, and an error if ctx ends first.
// Errors reading the backlog (an election in progress) restart the hold.
func WaitQuiescent(ctx context.Context, js jetstream.JetStream, hold time.Duration) (Backlog, error) {
	var last Backlog
	var lastErr error
	var quietSince time.Time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := ReadBacklog(rctx, js)
		cancel()
		switch {
		case err != nil:
			lastErr, quietSince = err, time.Time{}
		case !b.idle() || b.Results != last.Results:
			last, lastErr, quietSince = b, nil, time.Time{}
		case quietSince.IsZero():
			last, lastErr, quietSince = b, nil, time.Now()
		case time.Since(quietSince) >= hold:
			return b, nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("not quiescent (last backlog %+v, last error: %w): %w", last, lastErr, ctx.Err())
			}
			return last, fmt.Errorf("not quiescent (last backlog %+v): %w", last, ctx.Err())
		case <-tick.C:
		}
	}
}
