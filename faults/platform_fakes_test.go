package faults

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contactstop/contactstop/platform/amazonconnect/connecttest"
	"github.com/contactstop/contactstop/platform/cxone/cxonetest"
	"github.com/contactstop/contactstop/platform/genesys/genesystest"
	"github.com/contactstop/contactstop/platform/twilio/twiliotest"
	"github.com/contactstop/contactstop/store"
)

// platOp is an operation of a platform as platform_clear sees it: the call
// that ends a contact, or a read of one.
type platOp int

const (
	opOther platOp = iota
	opStop         // StopContact, end, task update, disconnect
	opRead         // DescribeContact, contact details, task fetch, conversation get
)

func (o platOp) String() string { return [...]string{"other", "stop", "read"}[o] }

// platFault is a scripted refusal: it is answered instead of the call
// being carried out.
type platFault int

const (
	faultThrottle platFault = iota // 429 or ThrottlingException, Retry-After 1 s
	faultServer                    // 500
	faultDrop                      // connection closed before it is carried out
)

// platCall is one call in a fake's log, in the platform's own terms
// reduced to what checkPlatform judges.
type platCall struct {
	Op        platOp
	ContactID string
	// Caller is what the call says of the request that made it (the
	// disconnect reason: "single <requestId>" or "bulk <bulkId>"), "" on a
	// platform whose stop carries nothing of it (Genesys Cloud): such
	// calls are attributed by the intents (checkPlatform).
	Caller string
	At     time.Time
	// Status is the HTTP status answered, 0 when none was (dropped,
	// answer lost); Code the platform's error code, for the report.
	Status int
	Code   string
	// Effect: this call ended the contact. Gone: it reached the contact
	// and found it ended (or changed under it), without effect.
	Effect, Gone, Throttled bool
}

// platContact is a contact as a fake holds it at the end.
type platContact struct {
	ID             string
	QueueID        string
	EnqueuedAt     time.Time
	AgentConnected bool
	// DisconnectedAt is when it ended, zero while active; Stopped says a
	// stop call ended it (not the customer), and Caller is that call's.
	DisconnectedAt time.Time
	Stopped        bool
	Caller         string
}

func (c platContact) Active() bool { return c.DisconnectedAt.IsZero() }

// platFake is what platform_clear needs of a platform's fake: binding two
// instances (acme and beta) to it under one account, the environment the
// workers read credentials from, the inventory, scripted faults and the
// call log.
type platFake interface {
	// Name is the platform's name for the report.
	Name() string
	URL() string
	// Binding binds instance to the fake (Rate, Burst and QuotaKey are
	// the caller's).
	Binding(instance string) store.Binding
	Env(t *testing.T) []string
	// ID is the platform's id for a contact of the scenario named name,
	// QueueID for a queue.
	ID(name string) string
	QueueID(name string) string
	Add(instance string, c platContact)
	// Disconnect ends a contact as its customer would; false if it had
	// ended already.
	Disconnect(instance, id string) bool
	Contact(instance, id string) (platContact, bool)
	StopEffects(id string) int
	Calls() []platCall
	Fail(op platOp, n int, f platFault)
	LoseNext(op platOp, n int)
	HangNext(op platOp, n int)
	SetLatency(op platOp, d time.Duration)
	SetQuota(op platOp, rate float64, burst int)
}

// platformFakes are the fakes platform_clear runs against, by scenario
// name suffix.
var platformFakes = map[string]func(t *testing.T, rate float64, burst int) platFake{
	store.PlatformAmazonConnect: newConnectFake,
	store.PlatformCXone:         newCXoneFake,
	store.PlatformTwilio:        newTwilioFake,
	store.PlatformGenesys:       newGenesysFake,
}

// --- Amazon Connect ---

type connectFake struct {
	s      *connecttest.Server
	remote map[string]string // contactstop instance → Connect instance
}

func newConnectFake(t *testing.T, rate float64, burst int) platFake {
	return &connectFake{
		s: connecttest.New(t, connecttest.WithInstance(connectA), connecttest.WithInstance(connectB),
			connecttest.WithQuota(connecttest.OpStopContact, rate, burst),
			connecttest.WithQuota(connecttest.OpDescribeContact, rate, burst)),
		remote: map[string]string{inst: connectA, betaInst: connectB},
	}
}

func (f *connectFake) Name() string { return "Amazon Connect" }
func (f *connectFake) URL() string  { return f.s.URL() }
func (f *connectFake) Binding(instance string) store.Binding {
	return store.Binding{Platform: store.PlatformAmazonConnect, ConnectInstanceID: f.remote[instance], Region: f.s.Region, Endpoint: f.s.URL()}
}

func (f *connectFake) Env(t *testing.T) []string {
	// The AWS SDK's default chain, from the environment only.
	none := filepath.Join(t.TempDir(), "none")
	return []string{"AWS_ACCESS_KEY_ID=" + f.s.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + f.s.SecretAccessKey,
		"AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true"}
}

func (f *connectFake) ID(name string) string      { return name }
func (f *connectFake) QueueID(name string) string { return name }
func (f *connectFake) Add(instance string, c platContact) {
	f.s.AddContact(f.remote[instance], connecttest.Contact{ID: c.ID, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt,
		AgentConnected: c.AgentConnected, DisconnectedAt: c.DisconnectedAt})
}
func (f *connectFake) Disconnect(instance, id string) bool {
	return f.s.Disconnect(f.remote[instance], id)
}
func (f *connectFake) Contact(instance, id string) (platContact, bool) {
	c, ok := f.s.Contact(f.remote[instance], id)
	return platContact{ID: c.ID, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt, AgentConnected: c.AgentConnected,
		DisconnectedAt: c.DisconnectedAt, Stopped: c.Stopped, Caller: c.DisconnectReason}, ok
}
func (f *connectFake) StopEffects(id string) int { return f.s.StopEffects(id) }

func (f *connectFake) op(op platOp) connecttest.Op {
	if op == opStop {
		return connecttest.OpStopContact
	}
	return connecttest.OpDescribeContact
}

func (f *connectFake) Calls() []platCall {
	var out []platCall
	for _, c := range f.s.Calls() {
		op := opOther
		switch c.Op {
		case connecttest.OpStopContact:
			op = opStop
		case connecttest.OpDescribeContact:
			op = opRead
		}
		out = append(out, platCall{Op: op, ContactID: c.ContactID, Caller: c.DisconnectReason, At: c.At, Status: c.Status,
			Code: c.Code, Effect: c.Effect, Gone: c.Code == "ContactNotFoundException", Throttled: c.Code == "ThrottlingException"})
	}
	return out
}

func (f *connectFake) Fail(op platOp, n int, kind platFault) {
	f.s.FailNext(f.op(op), n, [...]connecttest.Fault{connecttest.Throttling("1"), connecttest.InternalError(), connecttest.DropConnection()}[kind])
}
func (f *connectFake) LoseNext(op platOp, n int)             { f.s.LoseNext(f.op(op), n) }
func (f *connectFake) HangNext(op platOp, n int)             { f.s.HangNext(f.op(op), n) }
func (f *connectFake) SetLatency(op platOp, d time.Duration) { f.s.SetLatency(f.op(op), d) }
func (f *connectFake) SetQuota(op platOp, rate float64, burst int) {
	f.s.SetQuota(f.op(op), rate, burst)
}

// --- NICE CXone ---

// cxoneFake is two CXone tenants, one per instance (a tenant's inventory
// is all its contacts), reached with one access key and client: their
// bindings share the quota key, so one budget.
type cxoneFake struct{ s map[string]*cxonetest.Server }

func newCXoneFake(t *testing.T, rate float64, burst int) platFake {
	f := &cxoneFake{s: map[string]*cxonetest.Server{}}
	for _, instance := range []string{inst, betaInst} {
		f.s[instance] = cxonetest.New(t, cxonetest.WithCredentials("faults-key", "faults-key-secret"), cxonetest.WithClient("faults-client", "faults-client-secret"),
			cxonetest.WithQuota(cxonetest.OpStopContact, rate, burst), cxonetest.WithQuota(cxonetest.OpDescribeContact, rate, burst))
	}
	return f
}

func (f *cxoneFake) Name() string { return "NICE CXone" }
func (f *cxoneFake) URL() string  { return f.s[inst].URL() + " and " + f.s[betaInst].URL() }
func (f *cxoneFake) Binding(instance string) store.Binding {
	return store.Binding{Platform: store.PlatformCXone, TenantID: f.s[instance].TenantID, Endpoint: f.s[instance].URL()}
}

func (f *cxoneFake) Env(*testing.T) []string {
	s := f.s[inst]
	return []string{"CXONE_ACCESS_KEY_ID=" + s.AccessKeyID, "CXONE_ACCESS_KEY_SECRET=" + s.AccessKeySecret,
		"CXONE_CLIENT_ID=" + s.ClientID, "CXONE_CLIENT_SECRET=" + s.ClientSecret}
}

var scenarioName = regexp.MustCompile(`^([a-z]+)([0-9]+)$`)

// ID makes CXone's numeric contact ids: "a12" is 1000000012, the prefix
// letters picking the leading digit.
func (f *cxoneFake) ID(name string) string {
	m := scenarioName.FindStringSubmatch(name)
	if m == nil {
		return name
	}
	lead := strings.IndexByte("abux", m[1][0]) + 1
	n, err := strconv.Atoi(m[2])
	if lead == 0 || len(m[1]) > 1 || err != nil {
		return name
	}
	return fmt.Sprintf("%d%09d", lead, n)
}

func (f *cxoneFake) QueueID(name string) string { return name }
func (f *cxoneFake) Add(instance string, c platContact) {
	f.s[instance].AddContact(cxonetest.Contact{ID: c.ID, SkillID: c.QueueID, EnqueuedAt: c.EnqueuedAt, AgentConnected: c.AgentConnected,
		DisconnectedAt: c.DisconnectedAt})
}
func (f *cxoneFake) Disconnect(instance, id string) bool { return f.s[instance].Disconnect(id) }
func (f *cxoneFake) Contact(instance, id string) (platContact, bool) {
	c, ok := f.s[instance].Contact(id)
	return platContact{ID: c.ID, QueueID: c.SkillID, EnqueuedAt: c.EnqueuedAt, AgentConnected: c.AgentConnected,
		DisconnectedAt: c.DisconnectedAt, Stopped: c.Stopped, Caller: c.DisconnectReason}, ok
}
func (f *cxoneFake) StopEffects(id string) int {
	return f.s[inst].StopEffects(id) + f.s[betaInst].StopEffects(id)
}

func (f *cxoneFake) op(op platOp) cxonetest.Op {
	if op == opStop {
		return cxonetest.OpStopContact
	}
	return cxonetest.OpDescribeContact
}

func (f *cxoneFake) Calls() []platCall {
	var out []platCall
	for _, s := range f.s {
		for _, c := range s.Calls() {
			op := opOther
			switch c.Op {
			case cxonetest.OpStopContact:
				op = opStop
			case cxonetest.OpDescribeContact, cxonetest.OpStateHistory:
				op = opRead
			}
			out = append(out, platCall{Op: op, ContactID: c.ContactID, Caller: c.DisconnectReason, At: c.At, Status: c.Status,
				Code: c.Code, Effect: c.Effect, Gone: op == opStop && c.Status == http.StatusNotFound, Throttled: c.Status == http.StatusTooManyRequests})
		}
	}
	return byTime(out)
}

// The scripted faults and the quota apply to the tenants alike.
func (f *cxoneFake) Fail(op platOp, n int, kind platFault) {
	for _, s := range f.s {
		s.FailNext(f.op(op), n, [...]cxonetest.Fault{cxonetest.Throttling("1"), cxonetest.InternalError(), cxonetest.DropConnection()}[kind])
	}
}

func (f *cxoneFake) LoseNext(op platOp, n int) {
	for _, s := range f.s {
		s.LoseNext(f.op(op), n)
	}
}

func (f *cxoneFake) HangNext(op platOp, n int) {
	for _, s := range f.s {
		s.HangNext(f.op(op), n)
	}
}

func (f *cxoneFake) SetLatency(op platOp, d time.Duration) {
	for _, s := range f.s {
		s.SetLatency(f.op(op), d)
	}
}

func (f *cxoneFake) SetQuota(op platOp, rate float64, burst int) {
	for _, s := range f.s {
		s.SetQuota(f.op(op), rate, burst)
	}
}

// --- Twilio ---

// twilioFake is one Twilio account with a TaskRouter workspace per
// instance; the contacts are tasks. A stop is a fetch and a conditional
// update, so reads have twice the budget's quota.
type twilioFake struct {
	s  *twiliotest.Server
	ws map[string]string // instance → workspace sid
}

func newTwilioFake(t *testing.T, rate float64, burst int) platFake {
	ws := map[string]string{inst: twiliotest.NewSID("WS"), betaInst: twiliotest.NewSID("WS")}
	return &twilioFake{ws: ws, s: twiliotest.New(t, twiliotest.WithWorkspace(ws[inst]), twiliotest.WithWorkspace(ws[betaInst]),
		twiliotest.WithQuota(twiliotest.OpUpdateTask, rate, burst), twiliotest.WithQuota(twiliotest.OpFetchTask, 2*rate, 2*burst),
		twiliotest.WithTimePrecision(time.Millisecond))}
}

func (f *twilioFake) Name() string { return "Twilio TaskRouter" }
func (f *twilioFake) URL() string  { return f.s.URL() }
func (f *twilioFake) Binding(instance string) store.Binding {
	return store.Binding{Platform: store.PlatformTwilio, WorkspaceSID: f.ws[instance], Endpoint: f.s.URL()}
}

func (f *twilioFake) Env(*testing.T) []string {
	return []string{"TWILIO_ACCOUNT_SID=" + f.s.AccountSID, "TWILIO_AUTH_TOKEN=" + f.s.AuthToken}
}

func (f *twilioFake) ID(name string) string { return twiliotest.SID(name) }

// QueueID is a TaskQueue's sid (what the inventory records as the queue).
func (f *twilioFake) QueueID(name string) string { return "WQ" + twiliotest.SID(name)[2:] }
func (f *twilioFake) Add(instance string, c platContact) {
	tk := twiliotest.Task{SID: c.ID, Channel: "voice", AssignmentStatus: twiliotest.TaskPending, TaskQueueEnteredAt: c.EnqueuedAt}
	tk.TaskQueueSID = c.QueueID
	if c.AgentConnected {
		tk.AssignmentStatus = twiliotest.TaskAssigned
	}
	if !c.DisconnectedAt.IsZero() {
		tk.AssignmentStatus, tk.Reason, tk.UpdatedAt = twiliotest.TaskCanceled, "hangup", c.DisconnectedAt
	}
	f.s.AddTask(f.ws[instance], tk)
}
func (f *twilioFake) Disconnect(_, id string) bool { return f.s.Disconnect(id) }
func (f *twilioFake) Contact(instance, id string) (platContact, bool) {
	tk, ok := f.s.Task(f.ws[instance], id)
	c := platContact{ID: tk.SID, QueueID: tk.TaskQueueSID, EnqueuedAt: tk.TaskQueueEnteredAt,
		AgentConnected: tk.AssignmentStatus == twiliotest.TaskAssigned, Stopped: tk.Stopped}
	if !tk.Active() {
		c.DisconnectedAt = tk.UpdatedAt
	}
	if tk.Stopped {
		c.Caller = tk.Reason
	}
	return c, ok
}
func (f *twilioFake) StopEffects(id string) int { return f.s.StopEffects(id) }

func (f *twilioFake) op(op platOp) twiliotest.Op {
	if op == opStop {
		return twiliotest.OpUpdateTask
	}
	return twiliotest.OpFetchTask
}

func (f *twilioFake) Calls() []platCall {
	var out []platCall
	for _, c := range f.s.Calls() {
		op := opOther
		switch c.Op {
		case twiliotest.OpUpdateTask:
			op = opStop
		case twiliotest.OpFetchTask:
			op = opRead
		}
		code := ""
		if c.Code != 0 {
			code = fmt.Sprint(c.Code)
		}
		// A conditional update refused 412 reached the task and found it
		// changed since it was fetched: another caller's cancel, or the
		// customer's.
		gone := op == opStop && (c.Status == http.StatusNotFound || c.Status == http.StatusPreconditionFailed)
		out = append(out, platCall{Op: op, ContactID: c.SID, Caller: c.Form.Get("Reason"), At: c.At, Status: c.Status,
			Code: code, Effect: c.Effect, Gone: gone, Throttled: c.Status == http.StatusTooManyRequests})
	}
	return out
}

func (f *twilioFake) Fail(op platOp, n int, kind platFault) {
	f.s.FailNext(f.op(op), n, [...]twiliotest.Fault{twiliotest.TooManyRequests("1"), twiliotest.InternalError(), twiliotest.DropConnection()}[kind])
}
func (f *twilioFake) LoseNext(op platOp, n int)             { f.s.LoseNext(f.op(op), n) }
func (f *twilioFake) HangNext(op platOp, n int)             { f.s.HangNext(f.op(op), n) }
func (f *twilioFake) SetLatency(op platOp, d time.Duration) { f.s.SetLatency(f.op(op), d) }
func (f *twilioFake) SetQuota(op platOp, rate float64, burst int) {
	if op == opRead {
		rate, burst = 2*rate, 2*burst
	}
	f.s.SetQuota(f.op(op), rate, burst)
}

// --- Genesys Cloud ---

// genesysFake is two Genesys Cloud organizations, one per instance (an
// organization's inventory is all its queued conversations), reached with
// one OAuth client whose bindings share the quota key. Its disconnect
// carries nothing of the request that sent it, so checkPlatform attributes
// each call to the intent on the contact's record when it was made. The
// client's own 300-a-minute limit is off: the scenario runs the budget at
// platRate.
type genesysFake struct {
	s map[string]*genesystest.Server
}

func newGenesysFake(t *testing.T, rate float64, burst int) platFake {
	f := &genesysFake{s: map[string]*genesystest.Server{}}
	for _, instance := range []string{inst, betaInst} {
		f.s[instance] = genesystest.New(t, genesystest.WithCredentials("faults-client", "faults-client-secret"),
			genesystest.WithClientLimit(0, time.Minute),
			genesystest.WithQuota(genesystest.OpDisconnect, rate, burst), genesystest.WithQuota(genesystest.OpGetConversation, rate, burst))
	}
	return f
}

func (f *genesysFake) Name() string { return "Genesys Cloud" }
func (f *genesysFake) URL() string  { return f.s[inst].URL() + " and " + f.s[betaInst].URL() }
func (f *genesysFake) Binding(instance string) store.Binding {
	return store.Binding{Platform: store.PlatformGenesys, Region: "mypurecloud.com", Endpoint: f.s[instance].URL()}
}

func (f *genesysFake) Env(*testing.T) []string {
	return []string{"GENESYSCLOUD_OAUTHCLIENT_ID=" + f.s[inst].ClientID, "GENESYSCLOUD_OAUTHCLIENT_SECRET=" + f.s[inst].ClientSecret}
}

// ID makes a conversation id of Genesys's form (a UUID) from a name.
func (f *genesysFake) ID(name string) string {
	h := fmt.Sprintf("%032x", []byte(name))
	h = h[len(h)-32:]
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:]
}

func (f *genesysFake) QueueID(name string) string { return name }
func (f *genesysFake) Add(instance string, c platContact) {
	f.s[instance].AddConversation(genesystest.Conversation{ID: c.ID, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt,
		AgentConnected: c.AgentConnected, EndedAt: c.DisconnectedAt})
}
func (f *genesysFake) Disconnect(instance, id string) bool { return f.s[instance].Disconnect(id) }
func (f *genesysFake) Contact(instance, id string) (platContact, bool) {
	c, ok := f.s[instance].Conversation(id)
	return platContact{ID: c.ID, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt, AgentConnected: c.AgentConnected,
		DisconnectedAt: c.EndedAt, Stopped: c.Disconnected}, ok
}
func (f *genesysFake) StopEffects(id string) int {
	return f.s[inst].StopEffects(id) + f.s[betaInst].StopEffects(id)
}

func (f *genesysFake) op(op platOp) genesystest.Op {
	if op == opStop {
		return genesystest.OpDisconnect
	}
	return genesystest.OpGetConversation
}

func (f *genesysFake) Calls() []platCall {
	var out []platCall
	for _, s := range f.s {
		for _, c := range s.Calls() {
			op := opOther
			switch c.Op {
			case genesystest.OpDisconnect:
				op = opStop
			case genesystest.OpGetConversation:
				op = opRead
			}
			out = append(out, platCall{Op: op, ContactID: c.ConversationID, At: c.At, Status: c.Status, Code: c.Code,
				Effect: c.Effect, Gone: op == opStop && c.Status == http.StatusNotFound, Throttled: c.Status == http.StatusTooManyRequests})
		}
	}
	return byTime(out)
}

func (f *genesysFake) Fail(op platOp, n int, kind platFault) {
	for _, s := range f.s {
		s.FailNext(f.op(op), n, [...]genesystest.Fault{genesystest.TooManyRequests("1"), genesystest.InternalServerError(), genesystest.DropConnection()}[kind])
	}
}

func (f *genesysFake) LoseNext(op platOp, n int) {
	for _, s := range f.s {
		s.LoseNext(f.op(op), n)
	}
}

func (f *genesysFake) HangNext(op platOp, n int) {
	for _, s := range f.s {
		s.HangNext(f.op(op), n)
	}
}

func (f *genesysFake) SetLatency(op platOp, d time.Duration) {
	for _, s := range f.s {
		s.SetLatency(f.op(op), d)
	}
}

func (f *genesysFake) SetQuota(op platOp, rate float64, burst int) {
	for _, s := range f.s {
		s.SetQuota(f.op(op), rate, burst)
	}
}

// byTime sorts calls merged from several fakes by time.
func byTime(calls []platCall) []platCall {
	slices.SortStableFunc(calls, func(a, b platCall) int { return a.At.Compare(b.At) })
	return calls
}
