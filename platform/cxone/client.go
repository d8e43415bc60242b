package cxone

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
	"strconv"
	"strings"
	"time"

	"github.com/contactstop/contactstop/platform"
)

// The operations, as platform.Error.Op and Config.OnAttempt name them.
const (
	// OpStopContact is the Admin API's end-contact operation:
	// POST {api}/inContactAPI/services/{version}/contacts/{contactId}/end.
	OpStopContact = "StopContact"
	// OpDescribeContact is the Reporting API's contact details:
	// GET {api}/inContactAPI/services/{version}/contacts/{contactId}.
	OpDescribeContact = "DescribeContact"
	// OpStateHistory is the Reporting API's state history of one contact,
	// GET …/contacts/{contactId}/state-history: a DescribeContact of a
	// contact waiting in a queue or with an agent asks it since when the
	// contact was queued. Only OnAttempt names it (its failures are not
	// the call's, see DescribeContact).
	OpStateHistory = "ContactStateHistory"
	// OpListActive is the Real-Time Data API's active contacts,
	// GET …/contacts/active, paged with top and skip.
	OpListActive = "ListActive"
	// OpToken is the token endpoint (POST {issuer}/auth/token) and
	// OpDiscovery the API discovery (GET
	// {issuer}/.well-known/cxone-configuration?tenantId=…). OnAttempt
	// names them; their failures are those of the call that needed them.
	OpToken     = "Token"
	OpDiscovery = "Discovery"
)

// Defaults.
const (
	// DefaultIssuer is CXone's authentication issuer: its token endpoint is
	// DefaultIssuer+"/auth/token" and its API discovery
	// DefaultIssuer+"/.well-known/cxone-configuration".
	DefaultIssuer = "https://cxone.niceincontact.com"
	// DefaultAPIVersion is the version of the inContactAPI services the
	// client calls (…/inContactAPI/services/v34.0/…).
	DefaultAPIVersion = "v34.0"
	// DefaultCallTimeout bounds one call when Config.CallTimeout is zero.
	DefaultCallTimeout = 10 * time.Second
	// DefaultPageSize is how many active contacts ListActive asks for per
	// page (top).
	DefaultPageSize = 500
)

// The environment variables credentials are read from when Config leaves
// them empty.
const (
	EnvAccessKeyID     = "CXONE_ACCESS_KEY_ID"
	EnvAccessKeySecret = "CXONE_ACCESS_KEY_SECRET"
	EnvClientID        = "CXONE_CLIENT_ID"
	EnvClientSecret    = "CXONE_CLIENT_SECRET"
	// EnvClientAuth is "basic" (the default: HTTP Basic,
	// client_secret_basic) or "post" (client_id and client_secret in the
	// form, client_secret_post), as the application was registered.
	EnvClientAuth = "CXONE_CLIENT_AUTH"
)

// DisconnectReasonHeader carries StopContact's disconnect reason. CXone's
// end-contact operation documents no reason (its request is the contact id
// alone); the header is not part of CXone's API, which ignores it, and
// lets a proxy or a fake see the reason contactstop was given.
const DisconnectReasonHeader = "X-Contactstop-Disconnect-Reason"

// Config binds a Client to one CXone tenant.
type Config struct {
	// TenantID is the CXone tenant: its API host is discovered from it.
	// Required unless Endpoint is set.
	TenantID string
	// Endpoint, when set, overrides discovery: it is the API's base URL
	// (https://api-na1.niceincontact.com; a proxy, tests), under which the
	// client calls /inContactAPI/services/{version}/….
	Endpoint string
	// AccessKeyID and AccessKeySecret are the access key of the CXone user
	// the client acts as. Empty: from the environment, CXONE_ACCESS_KEY_ID
	// and CXONE_ACCESS_KEY_SECRET.
	AccessKeyID, AccessKeySecret string
	// ClientID and ClientSecret identify the application registered with
	// NICE, which CXone's token endpoint requires along with the access
	// key. Empty: from the environment, CXONE_CLIENT_ID and
	// CXONE_CLIENT_SECRET; without them the token request is sent without
	// client authentication.
	ClientID, ClientSecret string
	// ClientAuth is how the client authenticates to the token endpoint:
	// "basic" (HTTP Basic, the default) or "post" (in the form). Empty:
	// CXONE_CLIENT_AUTH, else basic.
	ClientAuth string
	// APIVersion is the inContactAPI version path segment. Default
	// DefaultAPIVersion.
	APIVersion string
	// HTTPClient, when set, sends the requests (its redirect policy is
	// replaced: a redirect is answered as an error, never followed).
	HTTPClient *http.Client
	// CallTimeout bounds each call, its answer included (for ListActive,
	// each page). Default DefaultCallTimeout.
	CallTimeout time.Duration
	// OnAttempt, when set, is called for every HTTP request the client
	// sends, with the operation's name (OpStopContact, …, OpToken,
	// OpDiscovery). It must not block.
	OnAttempt func(op string)
	// DiscoveryURL is the issuer whose token endpoint and API discovery
	// the client uses (tests). Default DefaultIssuer.
	DiscoveryURL string
}

// Client ends and lists the contacts of one CXone tenant. It implements
// platform.Platform and platform.Lister and is safe for concurrent use.
//
// It makes one attempt per call: contactstop's backoff is the only retry
// layer. The single exception is an answer 401 (the bearer token was
// refused): the client renews the token once and sends the call again,
// since CXone refuses an unauthenticated call before carrying it out.
type Client struct {
	hc         *http.Client
	issuer     string // without a trailing slash
	tenantID   string
	endpoint   string // fixed API base URL, or "" to discover it
	version    string
	timeout    time.Duration
	onAttempt  func(op string)
	pageSize   int
	creds      credentials
	secrets    *secrets
	now        func() time.Time
	apiBase    lazy[string]
	tokens     tokenCache
	clientAuth string
}

var (
	_ platform.Platform = (*Client)(nil)
	_ platform.Lister   = (*Client)(nil)
)

// New makes a Client. It reads the credentials (from cfg, else the
// environment) but calls nothing: the API host is discovered, and the
// access key exchanged for a token, by the first call. Missing credentials
// make every call fail Denied without sending anything.
func New(ctx context.Context, cfg Config) (*Client, error) {
	_ = ctx
	if cfg.TenantID == "" && cfg.Endpoint == "" {
		return nil, errors.New("cxone: a TenantID (its API host is discovered from it) or an Endpoint is required")
	}
	if cfg.CallTimeout < 0 {
		return nil, fmt.Errorf("cxone: CallTimeout %v is negative", cfg.CallTimeout)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.DiscoveryURL == "" {
		cfg.DiscoveryURL = DefaultIssuer
	}
	if err := checkURL(cfg.DiscoveryURL); err != nil {
		return nil, fmt.Errorf("cxone: DiscoveryURL: %w", err)
	}
	if cfg.Endpoint != "" {
		if err := checkURL(cfg.Endpoint); err != nil {
			return nil, fmt.Errorf("cxone: Endpoint: %w", err)
		}
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if strings.ContainsAny(cfg.APIVersion, "/?#") {
		return nil, fmt.Errorf("cxone: APIVersion %q is not a path segment", cfg.APIVersion)
	}
	creds := credentials{
		accessKeyID:     firstNonEmpty(cfg.AccessKeyID, os.Getenv(EnvAccessKeyID)),
		accessKeySecret: firstNonEmpty(cfg.AccessKeySecret, os.Getenv(EnvAccessKeySecret)),
		clientID:        firstNonEmpty(cfg.ClientID, os.Getenv(EnvClientID)),
		clientSecret:    firstNonEmpty(cfg.ClientSecret, os.Getenv(EnvClientSecret)),
	}
	auth := strings.ToLower(firstNonEmpty(cfg.ClientAuth, os.Getenv(EnvClientAuth), "basic"))
	if auth != "basic" && auth != "post" {
		return nil, fmt.Errorf("cxone: client authentication %q (valid: basic, post)", auth)
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{
		hc:         hc,
		issuer:     strings.TrimRight(cfg.DiscoveryURL, "/"),
		tenantID:   cfg.TenantID,
		endpoint:   strings.TrimRight(cfg.Endpoint, "/"),
		version:    cfg.APIVersion,
		timeout:    cfg.CallTimeout,
		onAttempt:  cfg.OnAttempt,
		pageSize:   DefaultPageSize,
		creds:      creds,
		secrets:    &secrets{},
		now:        time.Now,
		clientAuth: auth,
	}
	c.secrets.keep(creds.accessKeyID, creds.accessKeySecret, creds.clientSecret)
	return c, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// StopContact ends an active contact: the Admin API's
// POST …/contacts/{contactId}/end (Studio's "End a Contact"). CXone's
// operation takes no reason: disconnectReason, when not "", travels only
// in DisconnectReasonHeader. Every failure is a *platform.Error.
func (c *Client) StopContact(ctx context.Context, contactID, disconnectReason string) error {
	if contactID == "" {
		return errNoContactID(OpStopContact)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var hdr http.Header
	if disconnectReason != "" {
		hdr = http.Header{DisconnectReasonHeader: {disconnectReason}}
	}
	resp, perr := c.do(ctx, OpStopContact, http.MethodPost, "contacts/"+url.PathEscape(contactID)+"/end", nil, hdr)
	if perr != nil {
		return perr
	}
	if resp.status < 200 || resp.status > 299 {
		return c.answerError(OpStopContact, resp)
	}
	return nil
}

// DescribeContact says what CXone knows of a contact now: the Reporting
// API's GET …/contacts/{contactId}, which answers a contact that is still
// active (its state, media type and skill) as well as one that has ended
// (when it started, how long it lasted, how long it waited). Every failure
// is a *platform.Error; an answer 404, 204 (no content) or 400 about the
// contact id is NotFound.
//
// The details of an active contact say which skill it waits in (or waited
// in, once with an agent) but not since when: for a contact queued or with
// an agent, DescribeContact then asks the contact's state history
// (…/contacts/{contactId}/state-history) when it entered the queue. That
// second request only adds EnqueuedAt: when it fails, the description
// goes without it (a queued contact keeps its last state change as
// EnqueuedAt) rather than failing the call, whose answer the worker needs
// for whether the contact is active.
func (c *Client) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	if contactID == "" {
		return platform.Status{}, errNoContactID(OpDescribeContact)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	path := "contacts/" + url.PathEscape(contactID)
	resp, perr := c.do(ctx, OpDescribeContact, http.MethodGet, path, nil, nil)
	if perr != nil {
		return platform.Status{}, perr
	}
	switch {
	case resp.status == http.StatusNoContent:
		return platform.Status{}, &platform.Error{Kind: platform.NotFound, Op: OpDescribeContact, Status: resp.status,
			Message: "CXone has no such contact (no content)"}
	case resp.status < 200 || resp.status > 299:
		return platform.Status{}, c.answerError(OpDescribeContact, resp)
	}
	wc, err := decodeContactDetails(resp.body, contactID)
	if err != nil {
		return platform.Status{}, &platform.Error{Kind: platform.Transient, Op: OpDescribeContact, Status: resp.status,
			Message: c.secrets.scrub("the answer does not describe the contact: " + err.Error())}
	}
	st := statusOf(wc)
	if st.Active && (st.State == stateQueued || st.State == stateConnected) {
		if at, skill, ok := c.enqueuedAt(ctx, path); ok {
			st.EnqueuedAt = at
			if st.QueueID == "" {
				st.QueueID = skill
			}
		}
	}
	return st, nil
}

// enqueuedAt asks the contact's state history when it entered a queue.
func (c *Client) enqueuedAt(ctx context.Context, contactPath string) (at time.Time, skill string, ok bool) {
	resp, perr := c.do(ctx, OpStateHistory, http.MethodGet, contactPath+"/state-history", nil, nil)
	if perr != nil || resp.status != http.StatusOK {
		return time.Time{}, "", false
	}
	var h wireStateHistory
	if err := json.Unmarshal(resp.body, &h); err != nil {
		return time.Time{}, "", false
	}
	return h.enqueued()
}

// ListActive calls fn for every active contact of the tenant: the
// Real-Time Data API's GET …/contacts/active, paged with top and skip
// until skip reaches the answer's totalRecords (without it: until a page
// comes back short), a page is empty, or the answer is 204 (no content).
// Contacts that start or end while it pages shift the pages: a contact
// seen twice is passed to fn once; one shifted past is seen by the next
// sync. Active contacts carry no enqueue time: a queued one's EnqueuedAt
// is its last state change, a connected one's is zero. Failures are
// *platform.Error; fn's are returned as is.
func (c *Client) ListActive(ctx context.Context, fn func(platform.Listed) error) error {
	seen := map[string]bool{}
	for skip := 0; ; {
		page, total, err := c.listPage(ctx, skip)
		if err != nil {
			return err
		}
		for _, wc := range page {
			id := string(wc.ContactID)
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			st := statusOf(wc)
			if !st.Active {
				continue
			}
			if err := fn(platform.Listed{ContactID: id, Status: st}); err != nil {
				return err
			}
		}
		skip += len(page)
		switch {
		case len(page) == 0:
			return nil
		case total > 0:
			// Pages may be shorter than asked for (a server's cap):
			// totalRecords says when the list ends.
			if skip >= total {
				return nil
			}
		case len(page) < c.pageSize:
			return nil
		}
	}
}

// listPage gets one page of active contacts.
func (c *Client) listPage(ctx context.Context, skip int) ([]wireContact, int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	q := url.Values{"top": {strconv.Itoa(c.pageSize)}, "skip": {strconv.Itoa(skip)}}
	resp, perr := c.do(ctx, OpListActive, http.MethodGet, "contacts/active", q, nil)
	if perr != nil {
		return nil, 0, perr
	}
	switch {
	case resp.status == http.StatusNoContent:
		return nil, 0, nil
	case resp.status < 200 || resp.status > 299:
		return nil, 0, c.answerError(OpListActive, resp)
	}
	var p wireActivePage
	if err := json.Unmarshal(resp.body, &p); err != nil {
		return nil, 0, &platform.Error{Kind: platform.Transient, Op: OpListActive, Status: resp.status,
			Message: "the answer is not a page of active contacts: " + c.secrets.scrub(err.Error())}
	}
	n, _ := p.TotalRecords.get()
	return p.ActiveContacts, int(n), nil
}

// errNoContactID refuses a call without a contact id before it is made.
func errNoContactID(op string) *platform.Error {
	return &platform.Error{Kind: platform.InvalidParameter, Op: op, Message: "the contact id is empty"}
}

// response is an answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// maxBody bounds an answer's body.
const maxBody = 16 << 20

// do sends one API call with a bearer token: the API's base URL is
// discovered (once) and the token obtained (cached) first. An answer 401
// renews the token and sends the call once more. Failures to send, and to
// discover or authenticate, are *platform.Error; answers of any status are
// returned.
func (c *Client) do(ctx context.Context, op, method, path string, query url.Values, hdr http.Header) (*response, *platform.Error) {
	base, err := c.base(ctx)
	if err != nil {
		return nil, c.asOp(op, err)
	}
	tok, err := c.bearer(ctx, "")
	if err != nil {
		return nil, c.asOp(op, err)
	}
	u := base + "/inContactAPI/services/" + c.version + "/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for renewed := false; ; renewed = true {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, &platform.Error{Kind: platform.InvalidParameter, Op: op, Message: c.secrets.scrub(err.Error())}
		}
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, perr := c.send(op, req)
		if perr != nil {
			return nil, perr
		}
		if resp.status != http.StatusUnauthorized {
			return resp, nil
		}
		if renewed {
			// Refused again: the next call starts with a new token.
			c.dropToken(tok)
			return resp, nil
		}
		// The token was refused (expired early, revoked): renew it once.
		if tok, err = c.bearer(ctx, tok); err != nil {
			return nil, c.asOp(op, err)
		}
	}
}

// send makes one HTTP attempt and reads its answer.
func (c *Client) send(op string, req *http.Request) (*response, *platform.Error) {
	if c.onAttempt != nil {
		c.onAttempt(op)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(req.Context(), op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The answer broke off: the call may or may not have taken effect.
		return nil, c.transportError(req.Context(), op, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// transportError classifies a failure to get an answer: Transient, the
// call may or may not have taken effect.
func (c *Client) transportError(ctx context.Context, op string, err error) *platform.Error {
	pe := &platform.Error{Kind: platform.Transient, Op: op}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		pe.Message = fmt.Sprintf("no answer within %v", c.timeout)
	case errors.Is(err, context.Canceled):
		pe.Message = "canceled"
	default:
		pe.Message = "no answer: " + c.secrets.scrub(err.Error())
	}
	pe.Err = errors.New(c.secrets.scrub(err.Error()))
	return pe
}

// asOp returns err (a failure of discovery or authentication, or the
// caller's context) as a failure of op.
func (c *Client) asOp(op string, err error) *platform.Error {
	var pe *platform.Error
	if errors.As(err, &pe) {
		cp := *pe
		cp.Op = op
		return &cp
	}
	msg := c.secrets.scrub(err.Error())
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("no answer within %v", c.timeout)
	}
	return &platform.Error{Kind: platform.Transient, Op: op, Message: msg, Err: errors.New(c.secrets.scrub(err.Error()))}
}

// base is the API's base URL: Config.Endpoint, else discovered from the
// tenant (once).
func (c *Client) base(ctx context.Context) (string, error) {
	if c.endpoint != "" {
		return c.endpoint, nil
	}
	return c.apiBase.get(ctx, c.timeout, c.discover)
}

// discover asks CXone's API discovery for the tenant's API endpoint:
// GET {issuer}/.well-known/cxone-configuration?tenantId=… answers
// api_endpoint (https://api-{area}.{domain}), area and domain.
func (c *Client) discover(ctx context.Context) (string, error) {
	u := c.issuer + "/.well-known/cxone-configuration?tenantId=" + url.QueryEscape(c.tenantID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, perr := c.send(OpDiscovery, req)
	if perr != nil {
		perr.Message = "API discovery: " + perr.Message
		return "", perr
	}
	if resp.status != http.StatusOK {
		pe := c.answerError(OpDiscovery, resp)
		if resp.status == http.StatusNotFound || resp.status == http.StatusBadRequest {
			// The tenant is unknown to CXone.
			pe.Kind = platform.ResourceNotFound
			pe.Message = fmt.Sprintf("API discovery knows no tenant %q", c.tenantID)
			return "", pe
		}
		pe.Message = strings.TrimSuffix("API discovery: "+pe.Message, ": ")
		return "", pe
	}
	var d wireDiscovery
	if err := json.Unmarshal(resp.body, &d); err != nil {
		return "", &platform.Error{Kind: platform.Transient, Op: OpDiscovery, Status: resp.status,
			Message: "API discovery: the answer is not JSON: " + c.secrets.scrub(err.Error())}
	}
	api := strings.TrimRight(d.APIEndpoint, "/")
	if api == "" && d.Area != "" && d.Domain != "" {
		api = "https://api-" + d.Area + "." + d.Domain
	}
	if err := checkURL(api); err != nil {
		return "", &platform.Error{Kind: platform.Transient, Op: OpDiscovery, Status: resp.status,
			Message: "API discovery: no usable api_endpoint in the answer"}
	}
	return api, nil
}

// answerError classifies an answer that is not a success. Its message is
// the answer's own (CXone's error and error_description, or message),
// scrubbed of every credential.
//
//	429            Throttled, with Retry-After
//	401, 403       Denied (a 401 reaches here after one token renewal)
//	404            NotFound for a contact's operation with a JSON answer
//	               (the contact is not active, or unknown); an answer that
//	               is not JSON (a gateway's) or another operation's:
//	               ResourceNotFound
//	400            NotFound when it is about the contact id (Studio's
//	               "Invalid Contact ID"); else InvalidParameter
//	408, 5xx       Transient
//	3xx            InvalidRequest (redirects are not followed)
//	other 4xx      InvalidRequest
func (c *Client) answerError(op string, resp *response) *platform.Error {
	code, msg := errorInfo(resp.body)
	pe := &platform.Error{Kind: platform.InvalidRequest, Op: op, Status: resp.status, Code: c.secrets.scrub(code), Message: c.secrets.scrub(msg)}
	contactOp := op == OpStopContact || op == OpDescribeContact
	switch s := resp.status; {
	case s == http.StatusTooManyRequests:
		pe.Kind = platform.Throttled
		pe.RetryAfter, _ = platform.ParseRetryAfter(resp.header.Get("Retry-After"), c.now())
	case s == http.StatusUnauthorized:
		pe.Kind = platform.Denied
		if pe.Message == "" {
			pe.Message = "CXone refused the access token"
		}
	case s == http.StatusForbidden:
		pe.Kind = platform.Denied
		if pe.Message == "" {
			pe.Message = "the access key's user lacks a permission the operation requires"
		}
	case s == http.StatusNotFound:
		pe.Kind = platform.ResourceNotFound
		if contactOp && json.Valid(resp.body) {
			pe.Kind = platform.NotFound
		}
	case s == http.StatusBadRequest:
		pe.Kind = platform.InvalidParameter
		if contactOp && mentionsContact(code+" "+msg) {
			pe.Kind = platform.NotFound
		}
	case s == http.StatusRequestTimeout || s >= 500:
		pe.Kind = platform.Transient
	case s >= 300 && s < 400:
		pe.Kind = platform.InvalidRequest
		pe.Message = "the API answered a redirect (" + c.secrets.scrub(resp.header.Get("Location")) + "): check the endpoint"
	}
	if pe.Message == "" && pe.Code == "" {
		pe.Message = http.StatusText(resp.status)
	}
	return pe
}

// mentionsContact reports whether an error's text is about the contact id.
func mentionsContact(s string) bool {
	return strings.Contains(strings.ToLower(s), "contact")
}

// errorInfo reads an error answer: CXone's error and error_description
// (OAuth style), or message/Message/errorMessage/description, in an object
// or the first element of an array; else the text itself.
func errorInfo(body []byte) (code, msg string) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", ""
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return "", truncate(string(body))
	}
	if a, ok := v.([]any); ok && len(a) > 0 {
		v = a[0]
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", truncate(string(body))
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			if s, ok := m[k].(string); ok && s != "" {
				return s
			}
		}
		return ""
	}
	code = str("error", "errorCode", "code", "Error")
	msg = str("error_description", "message", "Message", "errorMessage", "description", "Description")
	return truncate(code), truncate(msg)
}

func truncate(s string) string {
	const max = 300
	s = strings.TrimSpace(s)
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
