package genesys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/contactstop/contactstop/platform"
)

// The operations, as platform.Error.Op and Config.OnAttempt name them.
const (
	OpStopContact     = "StopContact"
	OpDescribeContact = "DescribeContact"
	OpListActive      = "ListActive"
	// OpToken is a token request to the login service. Config.OnAttempt
	// counts it under this name; its failure is reported as the failure of
	// the operation that needed the token.
	OpToken = "Token"
)

// The environment variables New reads the OAuth client from when Config
// has none: the names the Genesys Cloud CLI (gc) and the CX as Code
// Terraform provider read.
const (
	EnvClientID     = "GENESYSCLOUD_OAUTHCLIENT_ID"
	EnvClientSecret = "GENESYSCLOUD_OAUTHCLIENT_SECRET"
)

// DefaultCallTimeout bounds one call when Config.CallTimeout is zero.
const DefaultCallTimeout = 10 * time.Second

// ListActive's query.
const (
	// ListPageSize is the page size of the details query, as Genesys's own
	// example of disconnecting queued interactions pages.
	ListPageSize = 100
	// ListLookback is how far back the details query's interval reaches:
	// the query only returns conversations that started on a day the
	// interval touches, so a conversation that has waited longer is not
	// listed.
	ListLookback = 30 * 24 * time.Hour
	// maxListPages stops a listing that keeps growing.
	maxListPages = 1000
)

// maxAnswer bounds the answer read (a page of 100 conversation details).
const maxAnswer = 16 << 20

// Config binds a Client to one Genesys Cloud organization: its region and
// an OAuth client (client credentials grant) of the organization.
type Config struct {
	// Region is the Genesys Cloud region's host, e.g. mypurecloud.com or
	// usw2.pure.cloud: the API is https://api.{Region} and the login
	// service https://login.{Region}. Required unless Endpoint is set.
	Region string
	// Endpoint, when set, overrides both https://api.{Region} and
	// https://login.{Region} (a proxy, tests).
	Endpoint string
	// ClientID and ClientSecret are the OAuth client's. When both are
	// empty, New reads them from GENESYSCLOUD_OAUTHCLIENT_ID and
	// GENESYSCLOUD_OAUTHCLIENT_SECRET.
	ClientID     string
	ClientSecret string
	// HTTPClient, when set, sends the requests (default: one on
	// http.DefaultTransport, without a timeout of its own).
	HTTPClient *http.Client
	// CallTimeout bounds each call, its token request and answer
	// included (for ListActive: each page). Default DefaultCallTimeout.
	CallTimeout time.Duration
	// OnAttempt, when set, is called for every HTTP request the client
	// makes, with the operation's name (OpStopContact, OpDescribeContact,
	// OpListActive, or OpToken for a token request), to count them in
	// metrics. It must not block.
	OnAttempt func(op string)
}

// Client ends conversations of one Genesys Cloud organization through the
// Platform API, with net/http and golang.org/x/oauth2 (Genesys's Go SDK,
// github.com/mypurecloud/platform-client-sdk-go, is not available to this
// build). It implements platform.Platform and platform.Lister and is safe
// for concurrent use.
//
// Every call makes one attempt: contactstop has a single retry layer, its
// own backoff within the platform's budget. The one exception is a 401: the
// token is renewed and the request sent once more, since Genesys refuses a
// request with an expired or revoked token before doing anything.
type Client struct {
	api       string // base URL of the Platform API
	http      *http.Client
	timeout   time.Duration
	tokens    *tokenSource
	onAttempt func(op string)
	now       func() time.Time
}

var (
	_ platform.Platform = (*Client)(nil)
	_ platform.Lister   = (*Client)(nil)
)

// regionHost is a Genesys Cloud region's host (mypurecloud.com,
// usw2.pure.cloud, use2.us-gov-pure.cloud…).
var regionHost = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+$`)

// New makes a Client. It reads the OAuth client from Config or the
// environment but calls nothing: the credentials are first exchanged for a
// token, and checked, by the first call (missing ones make every call fail
// Denied).
func New(_ context.Context, cfg Config) (*Client, error) {
	if cfg.CallTimeout < 0 {
		return nil, fmt.Errorf("genesys: CallTimeout %v is negative", cfg.CallTimeout)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	api, login, err := baseURLs(cfg.Region, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	id, secret := cfg.ClientID, cfg.ClientSecret
	switch {
	case id == "" && secret == "":
		id, secret = os.Getenv(EnvClientID), os.Getenv(EnvClientSecret)
	case id == "" || secret == "":
		return nil, errors.New("genesys: set both ClientID and ClientSecret, or neither (to read " + EnvClientID + " and " + EnvClientSecret + ")")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	c := &Client{api: api, timeout: cfg.CallTimeout, onAttempt: cfg.OnAttempt, now: time.Now}
	c.http = countAttempts(hc, cfg.OnAttempt)
	c.tokens = newTokenSource(id, secret, login+"/oauth/token", c.http, func() time.Time { return c.now() })
	return c, nil
}

// baseURLs are the API's and the login service's base URLs.
func baseURLs(region, endpoint string) (api, login string, err error) {
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", "", fmt.Errorf("genesys: Endpoint %q: an http(s) URL is required", endpoint)
		}
		base := strings.TrimSuffix(endpoint, "/")
		return base, base, nil
	}
	if !regionHost.MatchString(region) {
		return "", "", fmt.Errorf("genesys: Region %q: the Genesys Cloud region's host is required, such as mypurecloud.com or usw2.pure.cloud", region)
	}
	return "https://api." + region, "https://login." + region, nil
}

// opKey marks a request's context with its operation, for countAttempts.
type opKey struct{}

// countAttempts wraps hc's transport to call onAttempt for every request.
func countAttempts(hc *http.Client, onAttempt func(op string)) *http.Client {
	if onAttempt == nil {
		return hc
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	wrapped := *hc
	wrapped.Transport = attemptCounter{base: base, onAttempt: onAttempt}
	return &wrapped
}

type attemptCounter struct {
	base      http.RoundTripper
	onAttempt func(op string)
}

func (a attemptCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if op, ok := r.Context().Value(opKey{}).(string); ok {
		a.onAttempt(op)
	}
	return a.base.RoundTrip(r)
}

// StopContact ends a conversation: POST
// /api/v2/conversations/{conversationId}/disconnect, which Genesys
// documents as a full teardown — disconnect requests for every connected
// media, and a system wrap-up code for participants pending wrap-up.
// Every failure is a *platform.Error; disconnectReason is not sent, the
// operation takes none.
//
// Why this operation: it ends a conversation whatever its media and
// wherever it is — waiting in a queue (the case Genesys's Admin >
// Disconnect Interactions tool is for, with the same permission,
// Conversation > Communication > Disconnect) or connected to an agent
// ("disconnect requests for any connected media") — from the conversation
// id alone, in one request. The alternatives take more: Genesys's own
// script for clearing a queue patches each conversation's media resource
// with {"state":"disconnected"} (PATCH /api/v2/conversations/chats/{id};
// calls, callbacks, emails and messages likewise), and a voice call can be
// ended by patching its customer participant (PATCH
// /api/v2/conversations/calls/{id}/participants/{participantId}); both
// need the media type or the participant first, that is a second request
// per stop against the same per-client rate limit, and a race between the
// two. Genesys notes that the teardown "is not intended to be the normal
// way of ending interactions" but for problems that need state
// resynchronized, and asks to open a support case when relying on it
// systematically: contactstop's stops are such interventions (forced
// stops, bulk clears, emergencies), not the way agents end their
// interactions.
//
// Genesys answers 202 Accepted: the teardown is under way, and the
// conversation may still show as active for a moment (DescribeContact).
// Genesys does not document what the operation answers for a conversation
// that has already ended. An unknown conversation is 404 not.found
// (NotFound); 404, 409 and 410 are taken as "not active" here (NotFound).
// Were Genesys to accept (202) the teardown of an ended conversation
// again, the stop would be reported as done.
func (c *Client) StopContact(ctx context.Context, contactID, disconnectReason string) error {
	if contactID == "" {
		return errNoContactID(OpStopContact)
	}
	_, err := c.call(ctx, OpStopContact, http.MethodPost, "/api/v2/conversations/"+url.PathEscape(contactID)+"/disconnect", nil)
	return err
}

// DescribeContact says what Genesys knows of a conversation now: GET
// /api/v2/conversations/{conversationId}, the conversation service's own
// view (the analytics details lag behind it). Every failure is a
// *platform.Error; an unknown conversation is NotFound.
//
// A conversation on a media contactstop does not model (video, cobrowse,
// screen share, social expressions) is described with an empty Channel
// rather than an error: the rest of the answer is what the caller needs.
func (c *Client) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	if contactID == "" {
		return platform.Status{}, errNoContactID(OpDescribeContact)
	}
	body, err := c.call(ctx, OpDescribeContact, http.MethodGet, "/api/v2/conversations/"+url.PathEscape(contactID), nil)
	if err != nil {
		return platform.Status{}, err
	}
	var cv conversation
	if err := json.Unmarshal(body, &cv); err != nil {
		return platform.Status{}, &platform.Error{Kind: platform.Transient, Op: OpDescribeContact, Status: http.StatusOK,
			Message: "the answer did not decode as a conversation", Err: err}
	}
	return statusOfConversation(&cv), nil
}

// ListActive lists the conversations in progress that were routed to a
// queue — waiting in it (QUEUED), answered by an agent (CONNECTED), or
// moved on from it (INITIATED) — with their queue and channel: POST
// /api/v2/analytics/conversations/details/query for conversations with no
// conversationEnd and an ACD participant, in any queue and media, started
// within ListLookback, by pages of ListPageSize (pageNumber 1, 2… until a
// short page). Every failure is a *platform.Error; fn's error is returned
// as is.
//
// The query widens the one Genesys gives for finding queued interactions
// to disconnect (an ACD interact segment with no segmentEnd, no
// conversationEnd) to every ACD-routed conversation not ended: the
// inventory sync records ENDED every active contact that a listing leaves
// out, so a listing of waiting conversations only would end, in the store,
// every conversation an agent has answered. Conversations that never
// reached a queue (internal calls, IVR-only calls) are not listed.
//
// The analytics data are near real time and pages are taken from a set
// that changes meanwhile: a conversation that ends between pages shifts
// the later ones, so one may be missed (the next sync lists it) and
// another listed twice (it is passed to fn once).
func (c *Client) ListActive(ctx context.Context, fn func(platform.Listed) error) error {
	now := c.now().UTC()
	interval := isoTime(now.Add(-ListLookback)) + "/" + isoTime(now.Add(time.Minute))
	seen := map[string]bool{}
	for page := 1; page <= maxListPages; page++ {
		query, err := json.Marshal(routedQuery(interval, page))
		if err != nil {
			return &platform.Error{Kind: platform.InvalidRequest, Op: OpListActive, Message: "encoding the query", Err: err}
		}
		body, err := c.call(ctx, OpListActive, http.MethodPost, "/api/v2/analytics/conversations/details/query", query)
		if err != nil {
			return err
		}
		var res detailsResponse
		if err := json.Unmarshal(body, &res); err != nil {
			return &platform.Error{Kind: platform.Transient, Op: OpListActive, Status: http.StatusOK,
				Message: "the answer did not decode as conversation details", Err: err}
		}
		for i := range res.Conversations {
			cv := &res.Conversations[i]
			if cv.ConversationID == "" || seen[cv.ConversationID] {
				continue
			}
			seen[cv.ConversationID] = true
			st := statusOfAnalytics(cv)
			if !st.Active {
				continue
			}
			if err := fn(platform.Listed{ContactID: cv.ConversationID, Status: st}); err != nil {
				return err
			}
		}
		if len(res.Conversations) < ListPageSize {
			return nil
		}
	}
	return nil
}

// routedQuery is ListActive's details query: conversations with no
// conversationEnd that have an ACD participant (a segment whose purpose is
// acd), oldest first.
func routedQuery(interval string, page int) detailsQuery {
	return detailsQuery{
		Interval: interval,
		Order:    "asc",
		OrderBy:  "conversationStart",
		Paging:   paging{PageSize: ListPageSize, PageNumber: page},
		SegmentFilters: []queryFilter{{Type: "and", Predicates: []queryPredicate{
			{Type: "dimension", Dimension: "purpose", Operator: "matches", Value: purposeACD},
		}}},
		ConversationFilters: []queryFilter{{Type: "and", Predicates: []queryPredicate{
			{Type: "dimension", Dimension: "conversationEnd", Operator: "notExists"},
		}}},
	}
}

// errNoContactID refuses a call without a contact id before it is made.
func errNoContactID(op string) *platform.Error {
	return &platform.Error{Kind: platform.InvalidParameter, Op: op, Message: "the contact id is empty"}
}

// call makes one API request (and, after a 401, renews the token and makes
// it once more) within the call timeout, and returns the answer's body.
// Every failure is a *platform.Error.
func (c *Client) call(ctx context.Context, op, method, path string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for renewed := false; ; renewed = true {
		tok, err := c.tokens.get(ctx)
		if err != nil {
			return nil, c.classifyToken(op, err)
		}
		status, header, answer, err := c.send(ctx, op, method, path, body, tok)
		if err != nil {
			return nil, c.classifyTransport(op, err)
		}
		if status == http.StatusUnauthorized && !renewed {
			c.tokens.invalidate(tok)
			continue
		}
		if status >= 200 && status < 300 {
			return answer, nil
		}
		return nil, c.classifyAnswer(op, status, header, answer)
	}
}

// send makes one HTTP request and reads its answer.
func (c *Client) send(ctx context.Context, op, method, path string, body []byte, token string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, opKey{}, op), method, c.api+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		// The answer broke off: the call may have taken effect.
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, answer, nil
}

// isoTime formats t as Genesys's intervals and times are written.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
