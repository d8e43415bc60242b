package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// contactsBucket is the KV bucket of contacts (store.Config's default,
// which every scenario uses).
const contactsBucket = "contactstop-contacts"

// OutcomeStopped names a contact.stopped outcome in Expect.Allowed; a
// failure is named by its reason code.
const OutcomeStopped = "STOPPED"

// Expect is what the scenario knows that the streams cannot tell.
type Expect struct {
	// Instances whose contact records are read. Every instance a request
	// or a bulk request named should be listed.
	Instances []string
	// Bulks are bulk requests the scenario published, with what their
	// completion must say.
	Bulks []BulkExpect
	// History holds, when not nil, every write of a contact record that the
	// scenario made (seeding, creating, moving), so that the checker knows
	// the record an ENDED contact replaced (the contacts bucket keeps only
	// the last revision). Every contact of Instances should have one.
	History map[ContactRef][]Version
	// BadRecords are keys of the contacts bucket where the scenario planted
	// records that are not valid contacts, with the revision it wrote: no
	// one may write them again.
	BadRecords map[string]uint64
	// Allowed lists, for some request identities, the final outcomes the
	// request may have: OutcomeStopped or a reason code.
	Allowed map[RequestKey][]string
	// DuplicateWindow is the results stream's duplicate window, and
	// Outages the times when no worker could work (the server down, every
	// worker down): together they tell the one copy of a result that
	// SPEC.md allows ("the same message redelivered after every worker
	// was down for longer than the duplicate window may store an
	// identical result again") from a duplicate.
	DuplicateWindow time.Duration
	Outages         []Outage
	// Bound lists the instances bound to a contact-center platform
	// (store.Binding). Their records may be ENDED by
	// store.EndedByPlatform (the platform reported the contact
	// disconnected before a request could end it: no request's doing,
	// no result) and carry stop intents while a request is in progress.
	Bound []string
}

// Outage is a time when no worker could store anything.
type Outage struct {
	From, To time.Time
	What     string
}

// BulkExpect is one bulk request and what its completion must say.
type BulkExpect struct {
	InstanceID, BulkID string
	// Matched, when positive: the bulk must match and stop exactly this
	// many contacts, none failing.
	Matched int
	// Unreadable is the number of records of the instance that cannot be
	// read as contacts: the completion's unreadable count.
	Unreadable int
}

// ContactRef names a contact.
type ContactRef struct {
	Instance, ContactID string
}

func (c ContactRef) String() string { return c.Instance + "/" + strconv.Quote(c.ContactID) }

// Version is one write of a contact's record: what the record said from
// that revision on.
type Version struct {
	// Revision is the KV revision written; 0 when the write's outcome is
	// unknown (no acknowledgement, and the writer could not tell whether
	// it landed). ExpectedRevision is the revision the write was
	// conditioned on (0 for a create).
	Revision, ExpectedRevision uint64
	State                      store.State
	QueueID                    string
	Channel                    store.Channel
	EnqueuedAt                 time.Time
	// SentAt is when the write was sent (it landed after), At when it was
	// acknowledged (it landed before).
	SentAt, At time.Time
}

func (v Version) String() string {
	rev := strconv.FormatUint(v.Revision, 10)
	if v.Revision == 0 {
		rev = "? (unacknowledged, on " + strconv.FormatUint(v.ExpectedRevision, 10) + ")"
	}
	return fmt.Sprintf("rev %s %s %s %s", rev, v.State, v.QueueID, v.Channel)
}

func (v Version) matches(m *events.Matcher) bool {
	return m.Match(string(v.State), v.QueueID, string(v.Channel), v.EnqueuedAt)
}

// RequestKey identifies a request to end one contact: its instance, the
// contact, and its identity (the requestId, else the Nats-Msg-Id, else
// "seq-<stream sequence>", as events.RequestIdentity computes it;
// "<bulkId>/<contactId>" for a contact of a bulk request).
type RequestKey struct {
	Instance, ContactID, ID string
}

func (k RequestKey) String() string {
	return k.Instance + ":" + k.ID + " (contact " + strconv.Quote(k.ContactID) + ")"
}

func (k RequestKey) contact() ContactRef { return ContactRef{k.Instance, k.ContactID} }

// Report is what Check found. Every count under "violations" must be zero;
// Problems lists examples of each.
type Report struct {
	// What went in.
	StoredRequests int // request messages in the requests stream
	Requests       int // distinct request identities among them
	BulkRequests   int // bulk request messages
	BulkItems      int // contacts of bulk requests with a result (or lost)
	Contacts       int // contact records read
	Unreadable     int // records of the instances that are not valid contacts

	// What came out.
	Results        int // result messages (contact.stopped and contact.stop.failed)
	Stopped        int // contact.stopped messages
	Failed         int // contact.stop.failed messages
	Retryable      int // of which retryable INTERNAL_ERRORs
	FailedByReason map[string]int
	Completions    int // contact.stop.bulk.completed messages

	// Violations.
	//
	// Lost: a stored request identity with no result at all; a contact
	// that matched a bulk request's filter from before the bulk was
	// published until after it completed, without a result of it.
	Lost int
	// Duplicated: an identity with more than one final result (any result
	// but a retryable INTERNAL_ERROR; for a bulk's contact, any result), or
	// a retryable INTERNAL_ERROR that answers no stored message of the
	// identity, answers a message another one answered, or answers a
	// message stored after the final result.
	Duplicated int
	// DoubleTerminated: a contact named by contact.stopped of two
	// identities, or ENDED by another request than the one whose
	// contact.stopped names it.
	DoubleTerminated int
	// Phantom: a result of a request never stored, or naming another
	// contact than its request; a contact.stopped whose contact does not
	// exist or is not ENDED.
	Phantom int
	// WronglyEnded: a contact ENDED by an identity that no stored request
	// for it (nor a stored bulk request) has, or whose endedBySeq is no
	// stored message of it.
	WronglyEnded int
	// EndedUnannounced: a contact ENDED by a request without a
	// contact.stopped of it (no result, or only retryable INTERNAL_ERRORs).
	EndedUnannounced int
	// FailedAndEnded: a request with a final failure whose contact is
	// ENDED by it.
	FailedAndEnded int
	// EndedUnmatched: a contact ENDED by a bulk request although the
	// record the end replaced did not match the bulk's filter (or no
	// record is known before the end).
	EndedUnmatched int
	// StaleEnd: an ENDED record whose previousState, queue, channel or
	// enqueuedAt are not those of the record it replaced (an end computed
	// from a stale read).
	StaleEnd int
	// BulkCompletionProblems: a stored bulk request without exactly one
	// completion, a completion whose counts differ from the bulk's stored
	// results, or a bulk request answered as a whole.
	BulkCompletionProblems int
	// BadResults: a result without the Nats-Msg-Id its identity (and, for
	// a retryable INTERNAL_ERROR, its message) gives, an unreadable
	// result, a failure of a bulk's contact other than INTERNAL_ERROR.
	BadResults int
	// WrongOutcome: a final result not among Expect.Allowed.
	WrongOutcome int
	// BadRecordWritten: a planted bad record (Expect.BadRecords) was
	// written or deleted.
	BadRecordWritten int
	// IntentLeft: a contact record that still carries a stop intent
	// (stopIntent) once the worker is quiescent, unless every result of
	// the intent's request is a retryable INTERNAL_ERROR: that request's
	// stop may have taken effect on the platform, and the intent is what
	// makes its resend ask the platform before calling again (and keeps
	// other requests from calling meanwhile).
	IntentLeft int

	// Counted apart, not violations: contacts of Expect.Bound instances
	// ENDED by the platform (store.EndedByPlatform), and intents kept
	// because their request ended as a retryable INTERNAL_ERROR.
	EndedByPlatform int
	IntentsKept     int

	// Documented, counted apart: identities with an identical copy of
	// their final result stored after an outage longer than the duplicate
	// window (Expect.Outages; SPEC.md "the one allowed copy").
	CopiedAfterOutage int

	// ResultTimes are the times JetStream stored each message of the
	// results stream (results and completions), in stream order: the
	// timeline the recovery figures are computed from.
	ResultTimes []time.Time `json:"-"`

	// Problems has up to 100 examples of violations, one line each; Notes
	// up to 50 remarks that are not violations.
	Problems []string
	Notes    []string
}

// Violations is the sum of every count that must be zero.
func (r *Report) Violations() int {
	return r.Lost + r.Duplicated + r.DoubleTerminated + r.Phantom + r.WronglyEnded + r.EndedUnannounced +
		r.FailedAndEnded + r.EndedUnmatched + r.StaleEnd + r.BulkCompletionProblems + r.BadResults + r.WrongOutcome +
		r.BadRecordWritten + r.IntentLeft
}

// String summarises the report on one line.
func (r *Report) String() string {
	reasons := make([]string, 0, len(r.FailedByReason))
	for code, n := range r.FailedByReason {
		reasons = append(reasons, code+"="+strconv.Itoa(n))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("requests %d (stored %d), bulk requests %d (contacts with results %d), contacts %d (+%d unreadable); "+
		"results %d: stopped %d, failed %d %v (retryable %d), completions %d; "+
		"LOST %d, DUPLICATED %d, DOUBLE-TERMINATED %d, PHANTOM %d, WRONGLY-ENDED %d, ENDED-UNANNOUNCED %d, FAILED-AND-ENDED %d, "+
		"ENDED-UNMATCHED %d, STALE-END %d, BULK-COMPLETION %d, BAD-RESULTS %d, WRONG-OUTCOME %d, BAD-RECORD-WRITTEN %d, INTENT-LEFT %d; "+
		"documented: copied after an outage %d; ended by the platform %d, intents kept %d",
		r.Requests, r.StoredRequests, r.BulkRequests, r.BulkItems, r.Contacts, r.Unreadable,
		r.Results, r.Stopped, r.Failed, reasons, r.Retryable, r.Completions,
		r.Lost, r.Duplicated, r.DoubleTerminated, r.Phantom, r.WronglyEnded, r.EndedUnannounced, r.FailedAndEnded,
		r.EndedUnmatched, r.StaleEnd, r.BulkCompletionProblems, r.BadResults, r.WrongOutcome, r.BadRecordWritten, r.IntentLeft,
		r.CopiedAfterOutage, r.EndedByPlatform, r.IntentsKept)
}

func (r *Report) problem(count *int, format string, args ...any) {
	*count++
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

func (r *Report) note(format string, args ...any) {
	if len(r.Notes) < 50 {
		r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
	}
}

// storedRequest is one request identity in the requests stream: the
// stream sequences and times of its messages, oldest first.
type storedRequest struct {
	seqs []uint64
	at   []time.Time
}

// bulkRef names a bulk request: its instance and identity.
type bulkRef struct{ instance, id string }

func (b bulkRef) String() string { return b.instance + ":" + b.id }

// storedBulk is one bulk request identity in the bulk stream.
type storedBulk struct {
	filter  events.BulkFilter
	match   *events.Matcher
	copies  int
	firstAt time.Time // when its first message was stored
}

// storedResult is one result message.
type storedResult struct {
	seq     uint64
	at      time.Time
	msgID   string
	stopped *events.Stopped
	failed  *events.StopFailed
}

// retryable: a retryable INTERNAL_ERROR, which answers one message; any
// other result is final.
func (s storedResult) retryable() bool {
	return s.failed != nil && s.failed.ReasonCode == events.ReasonInternalError && s.failed.Retryable
}

// outcome is OutcomeStopped or the reason code.
func (s storedResult) outcome() string {
	if s.stopped != nil {
		return OutcomeStopped
	}
	return string(s.failed.ReasonCode)
}

type storedCompletion struct {
	seq uint64
	at  time.Time
	c   events.BulkCompleted
}

// checker holds what Check read.
type checker struct {
	exp Expect
	rep *Report

	requests    map[RequestKey]*storedRequest
	requestIDs  map[bulkRef][]string // (instance, identity) → the contacts stored requests name
	bulks       map[bulkRef]*storedBulk
	results     map[RequestKey][]storedResult
	completions map[bulkRef][]storedCompletion
	contacts    map[ContactRef]store.Contact
	// bulkOf maps the identity of every bulk contact with a result (and
	// every lost one) to its bulk.
	bulkOf map[RequestKey]bulkRef
}

// Check reads the requests, bulk requests and results streams whole, and
// every contact of exp.Instances, and reports what it found. Call it once
// the worker is quiescent (WaitQuiescent). It returns an error only when it
// could not read something; what it read is judged in the Report.
func Check(ctx context.Context, js jetstream.JetStream, exp Expect) (*Report, error) {
	c := &checker{exp: exp, rep: &Report{FailedByReason: map[string]int{}},
		requests: map[RequestKey]*storedRequest{}, requestIDs: map[bulkRef][]string{}, bulks: map[bulkRef]*storedBulk{},
		results: map[RequestKey][]storedResult{}, completions: map[bulkRef][]storedCompletion{},
		contacts: map[ContactRef]store.Contact{}, bulkOf: map[RequestKey]bulkRef{}}
	if err := c.read(ctx, js); err != nil {
		return nil, err
	}
	c.classifyResults()
	c.checkRequests()
	c.checkBulkItems()
	c.checkContacts()
	c.checkIntents()
	c.checkReplaced()
	c.checkBulks()
	if err := c.checkBadRecords(ctx, js); err != nil {
		return nil, err
	}
	c.rep.BulkItems = len(c.bulkOf)
	sort.Strings(c.rep.Problems)
	sort.Strings(c.rep.Notes)
	return c.rep, nil
}

// read reads the streams and the contacts.
func (c *checker) read(ctx context.Context, js jetstream.JetStream) error {
	rep := c.rep
	err := readStream(ctx, js, events.StreamRequests, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		rep.StoredRequests++
		req, err := events.DecodeStopRequest(m.Data())
		if err != nil {
			// The suite publishes only valid requests.
			rep.problem(&rep.Phantom, "request seq %d is not a valid request (%v): the checker cannot judge it", md.Sequence.Stream, err)
			return nil
		}
		k := RequestKey{req.InstanceID, req.ContactID, events.RequestIdentity(req.RequestID, m.Headers().Get(events.HeaderMsgID), md.Sequence.Stream)}
		r := c.requests[k]
		if r == nil {
			r = &storedRequest{}
			c.requests[k] = r
			id := bulkRef{k.Instance, k.ID}
			c.requestIDs[id] = append(c.requestIDs[id], k.ContactID)
		}
		r.seqs = append(r.seqs, md.Sequence.Stream)
		r.at = append(r.at, md.Timestamp)
		return nil
	})
	if err != nil {
		return err
	}
	rep.Requests = len(c.requests)

	err = readStream(ctx, js, events.StreamBulk, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		rep.BulkRequests++
		b, err := events.DecodeBulkRequest(m.Data())
		if err != nil {
			rep.problem(&rep.Phantom, "bulk request seq %d is not valid (%v): the checker cannot judge it", md.Sequence.Stream, err)
			return nil
		}
		k := bulkRef{b.InstanceID, events.RequestIdentity(b.BulkID, m.Headers().Get(events.HeaderMsgID), md.Sequence.Stream)}
		sb := c.bulks[k]
		if sb == nil {
			sb = &storedBulk{filter: b.Filter, match: b.Filter.Matcher(), firstAt: md.Timestamp}
			c.bulks[k] = sb
		}
		sb.copies++
		return nil
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}

	err = readStream(ctx, js, events.StreamResults, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		rep.ResultTimes = append(rep.ResultTimes, md.Timestamp)
		if strings.HasPrefix(m.Subject(), events.SubjectBulkCompleted+".") {
			rep.Completions++
			var bc events.BulkCompleted
			if err := json.Unmarshal(m.Data(), &bc); err != nil {
				rep.problem(&rep.BulkCompletionProblems, "BULK: completion seq %d unreadable: %v", md.Sequence.Stream, err)
				return nil
			}
			k := bulkRef{bc.InstanceID, bc.BulkID}
			c.completions[k] = append(c.completions[k], storedCompletion{seq: md.Sequence.Stream, at: md.Timestamp, c: bc})
			return nil
		}
		res, err := events.DecodeResult(m.Subject(), m.Data())
		if err != nil {
			rep.problem(&rep.BadResults, "BAD RESULT: result seq %d unreadable: %v", md.Sequence.Stream, err)
			return nil
		}
		rep.Results++
		sr := storedResult{seq: md.Sequence.Stream, at: md.Timestamp, msgID: m.Headers().Get(events.HeaderMsgID),
			stopped: res.Stopped, failed: res.Failed}
		var k RequestKey
		if res.Stopped != nil {
			rep.Stopped++
			k = RequestKey{res.Stopped.InstanceID, res.Stopped.ContactID, res.Stopped.RequestID}
		} else {
			rep.Failed++
			rep.FailedByReason[string(res.Failed.ReasonCode)]++
			if sr.retryable() {
				rep.Retryable++
			}
			k = RequestKey{res.Failed.InstanceID, res.Failed.ContactID, res.Failed.RequestID}
		}
		c.results[k] = append(c.results[k], sr)
		return nil
	})
	if err != nil {
		return err
	}

	if len(c.exp.Instances) > 0 {
		st, err := store.Open(ctx, js, store.Config{KeepExisting: true})
		if err != nil {
			return fmt.Errorf("open the store: %w", err)
		}
		for _, inst := range c.exp.Instances {
			err := st.WalkContacts(ctx, store.WalkParams{InstanceID: inst}, func(e store.WalkEntry) error {
				if e.Bad != nil {
					rep.Unreadable++
					rep.note("unreadable record: %v", e.Bad)
					return nil
				}
				c.contacts[ContactRef{e.Contact.InstanceID, e.Contact.ContactID}] = e.Contact
				return nil
			})
			if err != nil {
				return fmt.Errorf("list the contacts of %s: %w", inst, err)
			}
		}
	}
	rep.Contacts = len(c.contacts)
	return nil
}

// itemBulk returns the stored bulk request whose contact k is:
// k.ID is "<bulkId>/<k.ContactID>" for a bulk stored for k.Instance.
func (c *checker) itemBulk(k RequestKey) (bulkRef, bool) {
	bulkID, ok := strings.CutSuffix(k.ID, "/"+k.ContactID)
	if !ok {
		return bulkRef{}, false
	}
	b := bulkRef{k.Instance, bulkID}
	return b, c.bulks[b] != nil
}

// classifyResults sorts the results out: of a stored request, of a bulk's
// contact, or of nothing stored.
func (c *checker) classifyResults() {
	rep := c.rep
	for k, rs := range c.results {
		if c.requests[k] != nil {
			continue
		}
		if b, ok := c.itemBulk(k); ok {
			c.bulkOf[k] = b
			continue
		}
		if b := (bulkRef{k.Instance, k.ID}); c.bulks[b] != nil && k.ContactID == "" {
			// The bulk request's own answer. The suite publishes only valid
			// bulk requests for registered instances, so any such answer
			// means the bulk was refused or given up.
			rep.problem(&rep.BulkCompletionProblems, "BULK: %s was answered as a whole: %s", b, describe(rs))
			continue
		}
		if others := c.requestIDs[bulkRef{k.Instance, k.ID}]; len(others) > 0 {
			rep.problem(&rep.Phantom, "PHANTOM: %d result(s) of request %s:%s name contact %q, but the request was stored for %q: %s",
				len(rs), k.Instance, k.ID, k.ContactID, others, describe(rs))
			continue
		}
		rep.problem(&rep.Phantom, "PHANTOM: %d result(s) for request %s, which was never stored: %s", len(rs), k, describe(rs))
	}
}

// copiedAfterOutage reports whether the final results rs (more than one)
// are one result stored again as SPEC.md allows: identical bodies and
// Nats-Msg-Ids, each copy stored more than the duplicate window after the
// one before, with an outage longer than the window in between (every
// worker down: the message that decided it was redelivered after it).
func (c *checker) copiedAfterOutage(rs []storedResult) (string, bool) {
	w := c.exp.DuplicateWindow
	if w <= 0 {
		return "", false
	}
	var why []string
	for i, r := range rs[1:] {
		prev := rs[i]
		if r.msgID != prev.msgID || !reflect.DeepEqual(r.stopped, prev.stopped) || !reflect.DeepEqual(r.failed, prev.failed) ||
			r.at.Sub(prev.at) <= w {
			return "", false
		}
		j := slices.IndexFunc(c.exp.Outages, func(o Outage) bool {
			return !o.From.Before(prev.at) && !o.To.After(r.at) && o.To.Sub(o.From) > w
		})
		if j < 0 {
			return "", false
		}
		o := c.exp.Outages[j]
		why = append(why, fmt.Sprintf("%s for %s", o.What, o.To.Sub(o.From).Round(time.Millisecond)))
	}
	return strings.Join(why, ", "), true
}

// finals splits results into the final ones and the retryable
// INTERNAL_ERRORs.
func finals(rs []storedResult) (final, retry []storedResult) {
	for _, r := range rs {
		if r.retryable() {
			retry = append(retry, r)
		} else {
			final = append(final, r)
		}
	}
	return final, retry
}

// checkRequests checks rule (a) for every stored request identity: one
// final result, retryable INTERNAL_ERRORs only per stored message before
// it, and the allowed outcome.
func (c *checker) checkRequests() {
	rep := c.rep
	for k, req := range c.requests {
		rs := c.results[k]
		if len(rs) == 0 {
			rep.problem(&rep.Lost, "LOST: request %s (stored %d times, seqs %v) has no result", k, len(req.seqs), req.seqs)
			continue
		}
		final, retry := finals(rs)
		if len(final) > 1 {
			if why, ok := c.copiedAfterOutage(final); ok {
				rep.CopiedAfterOutage++
				rep.note("request %s (stored %d times, seqs %v): its result stored %d times, identical, across %s: %s",
					k, len(req.seqs), req.seqs, len(final), why, describe(final))
				final = final[:1]
			} else {
				rep.problem(&rep.Duplicated, "DUPLICATED: request %s (stored %d times, seqs %v) has %d final results: %s",
					k, len(req.seqs), req.seqs, len(final), describe(final))
			}
		}
		want := events.ResultMsgID(k.Instance, k.ContactID, k.ID)
		for _, r := range final {
			if r.msgID != want {
				rep.problem(&rep.BadResults, "BAD RESULT: result seq %d of request %s has Nats-Msg-Id %q, want %q", r.seq, k, r.msgID, want)
			}
		}
		if len(retry) > 0 {
			c.checkRetryable(k, req, final, retry)
		}
		if allowed, ok := c.exp.Allowed[k]; ok && len(final) > 0 && !slices.Contains(allowed, final[0].outcome()) {
			rep.problem(&rep.WrongOutcome, "WRONG OUTCOME: request %s: %s, want one of %v", k, describe(final[:1]), allowed)
		}
	}
}

// checkRetryable checks the retryable INTERNAL_ERRORs of one request: each
// answers one stored message of it (its Nats-Msg-Id says which), no
// message twice, and no message stored after the final result.
func (c *checker) checkRetryable(k RequestKey, req *storedRequest, final, retry []storedResult) {
	rep := c.rep
	byMsgID := make(map[string]int, len(req.seqs))
	for i, seq := range req.seqs {
		byMsgID[events.RetryableResultMsgID(k.Instance, k.ContactID, k.ID, seq)] = i
	}
	// The message that decided the final result, when known: the one
	// whose delivery ended the contact.
	var decidedBy uint64
	if len(final) > 0 && final[0].stopped != nil {
		if ct, ok := c.contacts[k.contact()]; ok && ct.State == store.StateEnded && ct.EndedBy == k.ID {
			decidedBy = ct.EndedBySeq
		}
	}
	seen := map[string]bool{}
	for _, r := range retry {
		i, ok := byMsgID[r.msgID]
		switch {
		case !ok:
			rep.problem(&rep.Duplicated, "DUPLICATED: request %s: retryable INTERNAL_ERROR seq %d has Nats-Msg-Id %q, which answers none of its stored messages %v",
				k, r.seq, r.msgID, req.seqs)
		case seen[r.msgID]:
			rep.problem(&rep.Duplicated, "DUPLICATED: request %s: a second retryable INTERNAL_ERROR (seq %d) for its message seq %d",
				k, r.seq, req.seqs[i])
		case len(final) > 0 && !req.at[i].Before(final[0].at):
			rep.problem(&rep.Duplicated, "DUPLICATED: request %s: retryable INTERNAL_ERROR seq %d answers message seq %d, stored at %s, after its final result %s",
				k, r.seq, req.seqs[i], req.at[i].Format(time.RFC3339Nano), describe(final[:1]))
		case decidedBy != 0 && req.seqs[i] >= decidedBy:
			rep.problem(&rep.Duplicated, "DUPLICATED: request %s: retryable INTERNAL_ERROR seq %d answers message seq %d, not before message seq %d, which ended the contact",
				k, r.seq, req.seqs[i], decidedBy)
		}
		seen[r.msgID] = true
	}
	if len(final) == 0 {
		rep.note("request %s has only retryable INTERNAL_ERROR results: %s", k, describe(retry))
	}
}

// checkBulkItems checks rule (a) for the contacts of bulk requests: one
// result each (a retryable INTERNAL_ERROR of a bulk's contact is its
// final answer), INTERNAL_ERROR as the only failure.
func (c *checker) checkBulkItems() {
	rep := c.rep
	for k := range c.bulkOf {
		rs := c.results[k]
		if len(rs) > 1 {
			if why, ok := c.copiedAfterOutage(rs); ok {
				rep.CopiedAfterOutage++
				rep.note("bulk contact %s: its result stored %d times, identical, across %s: %s", k, len(rs), why, describe(rs))
			} else {
				rep.problem(&rep.Duplicated, "DUPLICATED: bulk contact %s has %d results: %s", k, len(rs), describe(rs))
			}
		}
		want := events.ResultMsgID(k.Instance, k.ContactID, k.ID)
		for _, r := range rs {
			if r.msgID != want {
				rep.problem(&rep.BadResults, "BAD RESULT: result seq %d of bulk contact %s has Nats-Msg-Id %q, want %q", r.seq, k, r.msgID, want)
			}
			if r.failed != nil && r.failed.ReasonCode != events.ReasonInternalError {
				rep.problem(&rep.BadResults, "BAD RESULT: bulk contact %s failed %s (a bulk skips what it cannot end; its only failure is INTERNAL_ERROR): %s",
					k, r.failed.ReasonCode, describe([]storedResult{r}))
			}
		}
	}
}

// endedBy returns the identity that ended an ENDED contact.
func endedBy(ref ContactRef, ct store.Contact) RequestKey {
	return RequestKey{ref.Instance, ref.ContactID, ct.EndedBy}
}

// checkContacts checks rules (b) and (e), contact by contact: ENDED iff
// exactly one stored contact.stopped names it, by that request; never
// ENDED by a request that failed; never by one not stored.
func (c *checker) checkContacts() {
	rep := c.rep
	stoppedBy := map[ContactRef][]string{} // distinct identities, of stored requests and bulks
	for k, rs := range c.results {
		if c.requests[k] == nil && c.bulkOf[k] == (bulkRef{}) {
			continue // judged as a phantom
		}
		for _, r := range rs {
			if r.stopped != nil && !slices.Contains(stoppedBy[k.contact()], k.ID) {
				stoppedBy[k.contact()] = append(stoppedBy[k.contact()], k.ID)
			}
		}
	}
	refs := map[ContactRef]bool{}
	for ref := range stoppedBy {
		refs[ref] = true
	}
	for ref, ct := range c.contacts {
		if ct.State == store.StateEnded {
			refs[ref] = true
		}
	}
	for ref := range refs {
		ct, exists := c.contacts[ref]
		ids := stoppedBy[ref]
		switch {
		case len(ids) > 1:
			rep.problem(&rep.DoubleTerminated, "DOUBLE: contact %s has contact.stopped from %d requests %q (endedBy %q)", ref, len(ids), ids, ct.EndedBy)
			continue
		case len(ids) == 1 && !exists:
			rep.problem(&rep.Phantom, "PHANTOM: contact.stopped by %q for contact %s, which does not exist", ids[0], ref)
			continue
		case len(ids) == 1 && ct.State != store.StateEnded:
			rep.problem(&rep.Phantom, "PHANTOM: contact.stopped by %q but contact %s is %s", ids[0], ref, ct.State)
			continue
		case len(ids) == 1 && ct.EndedBy != ids[0]:
			rep.problem(&rep.DoubleTerminated, "DOUBLE: contact %s is ENDED by %q but contact.stopped names %q", ref, ct.EndedBy, ids[0])
			continue
		}
		// ENDED; stopped by the request that ended it, or by none.
		k := endedBy(ref, ct)
		req := c.requests[k]
		_, isItem := c.itemBulk(k)
		if len(ids) == 0 && c.endedByPlatform(ref, ct, req, isItem) {
			rep.EndedByPlatform++
			continue
		}
		switch {
		case req == nil && !isItem:
			if others := c.requestIDs[bulkRef{k.Instance, k.ID}]; len(others) > 0 {
				rep.problem(&rep.WronglyEnded, "WRONGLY ENDED: contact %s is ENDED by %q, a request stored for contacts %q, not for it", ref, ct.EndedBy, others)
			} else {
				rep.problem(&rep.WronglyEnded, "WRONGLY ENDED: contact %s is ENDED by %q, which no stored request for it has as identity", ref, ct.EndedBy)
			}
			continue
		case req != nil && !slices.Contains(req.seqs, ct.EndedBySeq):
			rep.problem(&rep.WronglyEnded, "WRONGLY ENDED: contact %s is ENDED by %q with endedBySeq %d, which is none of its stored messages %v",
				ref, ct.EndedBy, ct.EndedBySeq, req.seqs)
		case req == nil && ct.EndedBySeq != 0:
			rep.problem(&rep.WronglyEnded, "WRONGLY ENDED: contact %s is ENDED by bulk contact %q with endedBySeq %d, want 0", ref, ct.EndedBy, ct.EndedBySeq)
		}
		rs := c.results[k]
		final, _ := finals(rs)
		failedFinal := slices.ContainsFunc(final, func(r storedResult) bool { return r.failed != nil })
		switch {
		case failedFinal:
			rep.problem(&rep.FailedAndEnded, "FAILED AND ENDED: contact %s is ENDED by %q, whose results are %s", ref, ct.EndedBy, describe(rs))
		case len(ids) == 0 && len(rs) == 0:
			rep.problem(&rep.EndedUnannounced, "ENDED UNANNOUNCED: contact %s is ENDED by %q, which has no result", ref, ct.EndedBy)
		case len(ids) == 0:
			rep.problem(&rep.EndedUnannounced, "ENDED UNANNOUNCED: contact %s is ENDED by %q, which has no contact.stopped: %s", ref, ct.EndedBy, describe(rs))
		}
	}
}

// endedByPlatform reports whether an ENDED record with no contact.stopped
// is the platform's report of a disconnection, which a bound instance's
// worker records (docs/design.md, "Platforms"): endedBy
// store.EndedByPlatform, no endedBySeq, on an Expect.Bound instance, and no
// stored request or bulk with that identity for the contact (else the
// generic rules judge it).
func (c *checker) endedByPlatform(ref ContactRef, ct store.Contact, req *storedRequest, isItem bool) bool {
	return ct.EndedBy == store.EndedByPlatform && ct.EndedBySeq == 0 && req == nil && !isItem &&
		slices.Contains(c.exp.Bound, ref.Instance)
}

// checkIntents checks that no record still carries a stop intent, unless
// the intent's request ended as a retryable INTERNAL_ERROR (Report.IntentLeft).
func (c *checker) checkIntents() {
	rep := c.rep
	for ref, ct := range c.contacts {
		in := ct.Intent
		if in == nil {
			continue
		}
		k := RequestKey{ref.Instance, ref.ContactID, in.RequestID}
		rs := c.results[k]
		final, retry := finals(rs)
		_, isItem := c.itemBulk(k)
		switch {
		case isItem && len(rs) > 0 && len(final) == 0:
			// A bulk's contact answered INTERNAL_ERROR (retryable): kept.
			rep.IntentsKept++
			rep.note("contact %s keeps the intent of bulk contact %s, answered %s", ref, k, describe(rs))
		case !isItem && len(final) == 0 && len(retry) > 0:
			rep.IntentsKept++
			rep.note("contact %s keeps the intent of request %s, answered only %s", ref, k, describe(retry))
		default:
			rep.problem(&rep.IntentLeft, "INTENT LEFT: contact %s (%s, endedBy %q) still carries the stop intent of %q (at %s), whose results are %s",
				ref, ct.State, ct.EndedBy, in.RequestID, in.At.Format(time.RFC3339Nano), describeOrNone(rs))
		}
	}
}

func describeOrNone(rs []storedResult) string {
	if len(rs) == 0 {
		return "none"
	}
	return describe(rs)
}

// candidates returns the versions that may be the record the write at
// revision rev replaced: the last acknowledged version before rev, and any
// unacknowledged write conditioned on it or later (it may have landed in
// between).
func candidates(versions []Version, rev uint64) []Version {
	var prev *Version
	for i, v := range versions {
		if v.Revision != 0 && v.Revision < rev && (prev == nil || v.Revision > prev.Revision) {
			prev = &versions[i]
		}
	}
	var out []Version
	floor := uint64(0)
	if prev != nil {
		out, floor = append(out, *prev), prev.Revision
	}
	for _, v := range versions {
		if v.Revision == 0 && v.ExpectedRevision >= floor && v.ExpectedRevision < rev {
			out = append(out, v)
		}
	}
	return out
}

// sameRecord reports whether an ENDED record carries over the fields of
// the version it replaced.
func sameRecord(ended store.Contact, v Version) bool {
	return ended.PreviousState == v.State && ended.QueueID == v.QueueID && ended.Channel == v.Channel &&
		ended.EnqueuedAt.Equal(v.EnqueuedAt)
}

// checkReplaced checks rule (c): the record an ENDED contact replaced (by
// Expect.History) matched the filter of the bulk that ended it, and the
// ENDED record was made from it.
func (c *checker) checkReplaced() {
	rep := c.rep
	ambiguous := 0
	for ref, ct := range c.contacts {
		if ct.State != store.StateEnded {
			continue
		}
		k := endedBy(ref, ct)
		b, isItem := c.itemBulk(k)
		if c.requests[k] == nil && !isItem {
			continue // wrongly ended, judged above
		}
		if c.exp.History == nil {
			// Without a history, the ENDED record's own copy of the record
			// it replaced.
			if isItem && !c.bulks[b].match.Match(string(ct.PreviousState), ct.QueueID, string(ct.Channel), ct.EnqueuedAt) {
				rep.problem(&rep.EndedUnmatched, "ENDED UNMATCHED: contact %s is ENDED by bulk %s, but it was %s in queue %q (%s) when ended, which filter %+v does not match",
					ref, b, ct.PreviousState, ct.QueueID, ct.Channel, c.bulks[b].filter)
			}
			continue
		}
		cands := candidates(c.exp.History[ref], ct.Revision)
		if len(cands) == 0 {
			if isItem {
				rep.problem(&rep.EndedUnmatched, "ENDED UNMATCHED: contact %s is ENDED by bulk %s at revision %d, but no write of it before is known (history %v)",
					ref, b, ct.Revision, c.exp.History[ref])
			} else {
				rep.note("contact %s ENDED at revision %d by %q: no earlier write of it is known", ref, ct.Revision, ct.EndedBy)
			}
			continue
		}
		if len(cands) > 1 {
			ambiguous++
		}
		if isItem && !slices.ContainsFunc(cands, func(v Version) bool { return v.matches(c.bulks[b].match) }) {
			rep.problem(&rep.EndedUnmatched, "ENDED UNMATCHED: contact %s is ENDED by bulk %s at revision %d, replacing %v, which filter %+v does not match",
				ref, b, ct.Revision, cands, c.bulks[b].filter)
		}
		if !slices.ContainsFunc(cands, func(v Version) bool { return sameRecord(ct, v) }) {
			rep.problem(&rep.StaleEnd, "STALE END: contact %s is ENDED by %q at revision %d as if it was %s in queue %q (%s, enqueued %s), but it replaced %v",
				ref, ct.EndedBy, ct.Revision, ct.PreviousState, ct.QueueID, ct.Channel, ct.EnqueuedAt.Format(time.RFC3339Nano), cands)
		}
	}
	if ambiguous > 0 {
		rep.note("%d ENDED contacts replaced one of several possible records (an unacknowledged write in between)", ambiguous)
	}
}

// inPlace reports whether a version matching m was the contact's record
// from before from until after to: the last acknowledged version before
// from matches, no write that may have replaced it was sent before to (a
// later revision, or an unacknowledged write on it or later), and the
// contact was not ended before to. Writers may be concurrent.
func inPlace(versions []Version, ct *store.Contact, m *events.Matcher, from, to time.Time) (Version, bool) {
	var cur *Version
	for i, v := range versions {
		if v.Revision != 0 && v.At.Before(from) && (cur == nil || v.Revision > cur.Revision) {
			cur = &versions[i]
		}
	}
	if cur == nil || !cur.matches(m) {
		return Version{}, false
	}
	for _, v := range versions {
		later := v.Revision > cur.Revision || v.Revision == 0 && v.ExpectedRevision >= cur.Revision
		if later && v.SentAt.Before(to) {
			return Version{}, false
		}
	}
	if ct != nil && ct.State == store.StateEnded && ct.Revision > cur.Revision && ct.EndedAt.Before(to) {
		return Version{}, false
	}
	return *cur, true
}

// checkBulks checks rule (d), bulk by bulk: one completion, whose counts
// are the bulk's stored results; and that no contact the bulk had to
// decide went without a result.
func (c *checker) checkBulks() {
	rep := c.rep
	type tally struct {
		stopped, failed int
		reasons         map[events.ReasonCode]int
	}
	tallies := map[bulkRef]*tally{}
	for k, b := range c.bulkOf {
		t := tallies[b]
		if t == nil {
			t = &tally{reasons: map[events.ReasonCode]int{}}
			tallies[b] = t
		}
		// One per identity: extra copies are judged by rule (a).
		if rs := c.results[k]; len(rs) > 0 {
			if r := rs[0]; r.stopped != nil {
				t.stopped++
			} else {
				t.failed++
				t.reasons[r.failed.ReasonCode]++
			}
		}
	}
	expects := map[bulkRef]BulkExpect{}
	for _, be := range c.exp.Bulks {
		expects[bulkRef{be.InstanceID, be.BulkID}] = be
	}
	for b, sb := range c.bulks {
		cs := c.completions[b]
		if len(cs) != 1 {
			rep.problem(&rep.BulkCompletionProblems, "BULK: %s (stored %d times) has %d completion events, want 1", b, sb.copies, len(cs))
		}
		if len(cs) == 0 {
			continue
		}
		done := cs[0].c
		t := tallies[b]
		if t == nil {
			t = &tally{reasons: map[events.ReasonCode]int{}}
		}
		reasons := maps.Clone(done.ReasonCodes)
		maps.DeleteFunc(reasons, func(_ events.ReasonCode, n int) bool { return n == 0 })
		switch {
		case done.Stopped != t.stopped:
			rep.problem(&rep.BulkCompletionProblems, "BULK: %s completed with stopped %d, but %d of its contacts have a contact.stopped", b, done.Stopped, t.stopped)
		case done.Failed != t.failed || !maps.Equal(reasons, t.reasons):
			rep.problem(&rep.BulkCompletionProblems, "BULK: %s completed with failed %d %v, but %d of its contacts have failures %v",
				b, done.Failed, done.ReasonCodes, t.failed, t.reasons)
		case done.Matched != done.Stopped+done.Failed+done.Skipped || done.Skipped < 0:
			rep.problem(&rep.BulkCompletionProblems, "BULK: %s completed with matched %d ≠ stopped %d + failed %d + skipped %d",
				b, done.Matched, done.Stopped, done.Failed, done.Skipped)
		}
		if be, ok := expects[b]; ok {
			if done.Unreadable != be.Unreadable {
				rep.problem(&rep.BulkCompletionProblems, "BULK: %s completed with unreadable %d, want %d", b, done.Unreadable, be.Unreadable)
			}
			if be.Matched > 0 && (done.Matched != be.Matched || done.Stopped != be.Matched || done.Failed != 0) {
				rep.problem(&rep.BulkCompletionProblems, "BULK: %s completed with matched %d, stopped %d, failed %d %v; want matched = stopped = %d",
					b, done.Matched, done.Stopped, done.Failed, done.ReasonCodes, be.Matched)
			}
		}
		c.checkBulkLost(b, sb, cs[0].at)
	}
	for b, cs := range c.completions {
		if c.bulks[b] == nil {
			rep.problem(&rep.BulkCompletionProblems, "BULK: %d completion event(s) for %s, which was never stored", len(cs), b)
		}
	}
	for b := range expects {
		if c.bulks[b] == nil {
			rep.problem(&rep.BulkCompletionProblems, "BULK: %s was expected but never stored", b)
		}
	}
}

// checkBulkLost finds the contacts bulk b had to decide but has no result
// for: with a history, those a matching record of was in place from
// before the bulk was stored until after its completion was; without one,
// those that are active and match now.
func (c *checker) checkBulkLost(b bulkRef, sb *storedBulk, completed time.Time) {
	rep := c.rep
	lost := func(ref ContactRef, why string) {
		k := RequestKey{ref.Instance, ref.ContactID, events.BulkItemRequestID(b.id, ref.ContactID)}
		c.bulkOf[k] = b
		rep.problem(&rep.Lost, "LOST: bulk %s has no result for contact %s, %s", b, ref, why)
	}
	has := func(ref ContactRef) bool {
		k := RequestKey{ref.Instance, ref.ContactID, events.BulkItemRequestID(b.id, ref.ContactID)}
		if len(c.results[k]) > 0 {
			return true
		}
		ct, ok := c.contacts[ref]
		return ok && ct.State == store.StateEnded && ct.EndedBy == k.ID // judged above
	}
	if c.exp.History == nil {
		for ref, ct := range c.contacts {
			if ref.Instance == b.instance && ct.State.Active() && sb.match.Match(string(ct.State), ct.QueueID, string(ct.Channel), ct.EnqueuedAt) && !has(ref) {
				lost(ref, fmt.Sprintf("which is %s in queue %q and matches filter %+v", ct.State, ct.QueueID, sb.filter))
			}
		}
		return
	}
	for ref, versions := range c.exp.History {
		if ref.Instance != b.instance || has(ref) {
			continue
		}
		var ct *store.Contact
		if x, ok := c.contacts[ref]; ok {
			ct = &x
		}
		if v, ok := inPlace(versions, ct, sb.match, sb.firstAt, completed); ok {
			lost(ref, fmt.Sprintf("whose record %v matched filter %+v from before the bulk was stored (%s) until after it completed (%s)",
				v, sb.filter, sb.firstAt.Format(time.RFC3339Nano), completed.Format(time.RFC3339Nano)))
		}
	}
}

// checkBadRecords checks that the planted bad records are as planted.
func (c *checker) checkBadRecords(ctx context.Context, js jetstream.JetStream) error {
	if len(c.exp.BadRecords) == 0 {
		return nil
	}
	kv, err := js.KeyValue(ctx, contactsBucket)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", contactsBucket, err)
	}
	rep := c.rep
	for key, rev := range c.exp.BadRecords {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			rep.problem(&rep.BadRecordWritten, "BAD RECORD WRITTEN: %s, planted at revision %d, is gone", key, rev)
		case err != nil:
			return fmt.Errorf("read %s: %w", key, err)
		case e.Revision() != rev:
			rep.problem(&rep.BadRecordWritten, "BAD RECORD WRITTEN: %s, planted at revision %d, is at revision %d: %q", key, rev, e.Revision(), e.Value())
		}
	}
	return nil
}

func describe(rs []storedResult) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.stopped != nil {
			parts[i] = fmt.Sprintf("[seq %d at %s: stopped %q (was %s, stoppedAt %s)]", r.seq, r.at.Format(time.RFC3339Nano),
				r.stopped.ContactID, r.stopped.PreviousState, r.stopped.StoppedAt.Format(time.RFC3339Nano))
		} else {
			parts[i] = fmt.Sprintf("[seq %d at %s: failed %q %s retryable=%v: %s]", r.seq, r.at.Format(time.RFC3339Nano),
				r.failed.ContactID, r.failed.ReasonCode, r.failed.Retryable, r.failed.Message)
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
	ci, err := consumerInfo(ctx, js, events.StreamRequests, events.ConsumerRequests)
	if err != nil {
		return b, err
	}
	b.Pending, b.AckPending = ci.NumPending, uint64(ci.NumAckPending)
	ci, err = consumerInfo(ctx, js, events.StreamBulk, events.ConsumerBulk)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return b, err
	default:
		b.BulkPending, b.BulkAckPending = ci.NumPending, uint64(ci.NumAckPending)
	}
	s, err := js.Stream(ctx, events.StreamResults)
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
