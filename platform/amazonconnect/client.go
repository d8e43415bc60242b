package amazonconnect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/connect"
	"github.com/aws/aws-sdk-go-v2/service/connect/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// The operations, as platform.Error.Op names them.
const (
	OpStopContact     = "StopContact"
	OpDescribeContact = "DescribeContact"
)

// DefaultCallTimeout bounds one call when Config.CallTimeout is zero.
const DefaultCallTimeout = 10 * time.Second

// Config binds a Client to one Amazon Connect instance.
type Config struct {
	// ConnectInstanceID is the Amazon Connect instance's id (the last
	// part of its ARN). Required.
	ConnectInstanceID string
	// Region is the instance's AWS Region. Default: the SDK's (AWS_REGION,
	// the profile); one of them is required.
	Region string
	// Endpoint, when set, overrides the API's base URL (a VPC endpoint, a
	// proxy, tests).
	Endpoint string
	// Credentials signs the calls. nil: the SDK's default chain
	// (config.LoadDefaultConfig: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
	// AWS_SESSION_TOKEN, profiles, web identity, container and instance
	// roles).
	Credentials aws.CredentialsProvider
	// HTTPClient, when set, sends the requests (default: the SDK's).
	HTTPClient *http.Client
	// CallTimeout bounds each call, its answer included. Default
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// OnAttempt, when set, is called for every HTTP attempt the SDK makes,
	// with the operation's name (to count them in metrics). It must not
	// block.
	OnAttempt func(op string)
}

// Client ends contacts of one Amazon Connect instance through the AWS SDK
// for Go v2. It implements platform.Platform and is safe for concurrent
// use.
type Client struct {
	api        *connect.Client
	instanceID string
	timeout    time.Duration
	creds      *credentialsProvider // nil with anonymous credentials
}

var _ platform.Platform = (*Client)(nil)

// New makes a Client. It loads the SDK's configuration (and, without
// Config.Credentials, finds the default credential chain) but calls no
// API: credentials are first retrieved, and checked, by the first call.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.ConnectInstanceID == "" {
		return nil, errors.New("amazonconnect: ConnectInstanceID is required")
	}
	if cfg.CallTimeout < 0 {
		return nil, fmt.Errorf("amazonconnect: CallTimeout %v is negative", cfg.CallTimeout)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	var load []func(*config.LoadOptions) error
	if cfg.Region != "" {
		load = append(load, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		load = append(load, config.WithCredentialsProvider(cfg.Credentials))
	}
	if cfg.HTTPClient != nil {
		load = append(load, config.WithHTTPClient(cfg.HTTPClient))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("amazonconnect: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("amazonconnect: no AWS Region (set Region, AWS_REGION or the profile's region)")
	}
	c := &Client{instanceID: cfg.ConnectInstanceID, timeout: cfg.CallTimeout}
	if awsCfg.Credentials != nil && !aws.IsCredentialsProvider(awsCfg.Credentials, (*aws.AnonymousCredentials)(nil)) {
		c.creds = &credentialsProvider{inner: awsCfg.Credentials}
		awsCfg.Credentials = c.creds
	}
	c.api = connect.NewFromConfig(awsCfg, func(o *connect.Options) {
		// One attempt per call: contactstop has a single retry layer, its
		// own backoff within the platform's budget (worker), which also
		// decides what an ambiguous failure means. aws.NopRetryer rather
		// than retry.AddWithMaxAttempts(retry.NewStandard(), 1): it states
		// the intent (MaxAttempts 1, no error retryable) instead of
		// capping machinery that would otherwise retry — the standard
		// retryer's error classification, backoff and client-side retry
		// token bucket — so no later change of a count can bring SDK
		// retries back. RetryMaxAttempts and RetryMode are cleared so
		// that the client runs exactly this retryer: AWS_MAX_ATTEMPTS or a
		// profile's max_attempts would otherwise wrap it in
		// retry.AddWithMaxAttempts (connect.finalizeRetryMaxAttempts).
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
		o.RetryMode = ""
		// Nothing the SDK could log (signing logs hold the canonical
		// request, session token included) is ever logged.
		o.ClientLogMode = 0
		o.Logger = logging.Nop{}
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		if cfg.OnAttempt != nil {
			o.APIOptions = append(o.APIOptions, addAttemptCounter(cfg.OnAttempt))
		}
	})
	return c, nil
}

// addAttemptCounter adds a middleware that calls onAttempt for every HTTP
// attempt. It sits at the end of the Deserialize step, which runs once per
// attempt: after the Finalize step's retry loop ("Retry") and signing, just
// before the request is sent.
func addAttemptCounter(onAttempt func(op string)) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("contactstop.AttemptCounter",
			func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
				onAttempt(middleware.GetOperationName(ctx))
				return next.HandleDeserialize(ctx, in)
			}), middleware.After)
	}
}

// StopContact ends an active contact (Amazon Connect StopContact with
// InstanceId and ContactId, and DisconnectReason{Code} when
// disconnectReason is not ""). Every failure is a *platform.Error.
func (c *Client) StopContact(ctx context.Context, contactID, disconnectReason string) error {
	if contactID == "" {
		return errNoContactID(OpStopContact)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	in := &connect.StopContactInput{InstanceId: aws.String(c.instanceID), ContactId: aws.String(contactID)}
	if disconnectReason != "" {
		in.DisconnectReason = &types.DisconnectReason{Code: aws.String(disconnectReason)}
	}
	if _, err := c.api.StopContact(ctx, in); err != nil {
		return c.classify(OpStopContact, err)
	}
	return nil
}

// DescribeContact says what Amazon Connect knows of a contact now
// (DescribeContact). Every failure is a *platform.Error.
//
// Amazon Connect answers DescribeContact of a contact it does not have
// with ResourceNotFoundException (404) — it has no ContactNotFoundException
// for this operation — the same exception as for an unknown instance, and
// nothing in the answer tells the two apart reliably. Here it is NotFound,
// because DescribeContact is only asked about an instance whose binding is
// in use, where an unknown instance shows up on StopContact first (as
// ResourceNotFound) and an unknown contact is the question the worker asks
// (a contact unseen by the store, or gone after its intent).
//
// A contact on a channel contactstop does not model (a channel Connect
// adds later) is described with an empty Channel rather than an error: the
// rest of the answer (active or not, since when) is what the caller needs,
// and failing the call would leave a redelivery unable to settle it.
func (c *Client) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	if contactID == "" {
		return platform.Status{}, errNoContactID(OpDescribeContact)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out, err := c.api.DescribeContact(ctx, &connect.DescribeContactInput{InstanceId: aws.String(c.instanceID), ContactId: aws.String(contactID)})
	if err != nil {
		return platform.Status{}, c.classify(OpDescribeContact, err)
	}
	if out.Contact == nil {
		return platform.Status{}, &platform.Error{Kind: platform.Transient, Op: OpDescribeContact, Status: http.StatusOK,
			Message: "the answer has no Contact"}
	}
	return statusOf(out.Contact), nil
}

// errNoContactID refuses a call without a contact id before it is made.
func errNoContactID(op string) *platform.Error {
	return &platform.Error{Kind: platform.InvalidParameter, Op: op, Message: "the contact id is empty"}
}

// statusOf maps Connect's contact to a platform status.
func statusOf(ct *types.Contact) platform.Status {
	st := platform.Status{Active: true, State: store.StateInitiated, Channel: channelOf(ct.Channel)}
	if q := ct.QueueInfo; q != nil && q.EnqueueTimestamp != nil {
		st.State = store.StateQueued
		st.QueueID = aws.ToString(q.Id)
		st.EnqueuedAt = *q.EnqueueTimestamp
	}
	if a := ct.AgentInfo; a != nil && a.ConnectedToAgentTimestamp != nil {
		st.State = store.StateConnected
	}
	if ct.DisconnectTimestamp != nil {
		st.Active = false
		st.State = store.StateEnded
		st.DisconnectedAt = *ct.DisconnectTimestamp
	}
	return st
}

// channelOf maps Connect's channels to the store's: VOICE, CHAT, TASK and
// EMAIL are VOICE, CHAT, WORK_ITEM and EMAIL; any other is "" (unknown).
func channelOf(ch types.Channel) store.Channel {
	switch ch {
	case types.ChannelVoice:
		return store.ChannelVoice
	case types.ChannelChat:
		return store.ChannelChat
	case types.ChannelTask:
		return store.ChannelWorkItem
	case types.ChannelEmail:
		return store.ChannelEmail
	}
	return ""
}

// kindByCode classifies Amazon's error codes (the exception's name, as
// X-Amzn-ErrorType or the body's __type/code carries it).
var kindByCode = map[string]platform.Kind{
	"ContactNotFoundException":  platform.NotFound,
	"ResourceNotFoundException": platform.ResourceNotFound,
	"InvalidParameterException": platform.InvalidParameter,
	"InvalidRequestException":   platform.InvalidRequest,

	"ThrottlingException":       platform.Throttled,
	"TooManyRequestsException":  platform.Throttled,
	"Throttling":                platform.Throttled,
	"ThrottledException":        platform.Throttled,
	"RequestThrottledException": platform.Throttled,
	"RequestLimitExceeded":      platform.Throttled,

	"InternalServiceException":    platform.Transient,
	"InternalFailure":             platform.Transient,
	"InternalServerError":         platform.Transient,
	"ServiceUnavailable":          platform.Transient,
	"ServiceUnavailableException": platform.Transient,

	"AccessDeniedException":               platform.Denied,
	"AccessDenied":                        platform.Denied,
	"UnrecognizedClientException":         platform.Denied,
	"InvalidSignatureException":           platform.Denied,
	"SignatureDoesNotMatch":               platform.Denied,
	"IncompleteSignature":                 platform.Denied,
	"IncompleteSignatureException":        platform.Denied,
	"InvalidClientTokenId":                platform.Denied,
	"MissingAuthenticationToken":          platform.Denied,
	"MissingAuthenticationTokenException": platform.Denied,
	"NotAuthorized":                       platform.Denied,
	"OptInRequired":                       platform.Denied,
	"RequestExpired":                      platform.Denied,
}

// kindOfCode is the kind of an error code; ok is false for a code not
// known here.
func kindOfCode(op, code string) (k platform.Kind, ok bool) {
	if strings.HasPrefix(code, "ExpiredToken") { // ExpiredToken, ExpiredTokenException
		return platform.Denied, true
	}
	k, ok = kindByCode[code]
	if ok && k == platform.ResourceNotFound && op == OpDescribeContact {
		k = platform.NotFound // see DescribeContact
	}
	return k, ok
}

// kindOfStatus classifies an HTTP status without a known error code.
func kindOfStatus(status int) platform.Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return platform.Throttled
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return platform.Denied
	case status == http.StatusRequestTimeout || status >= 500:
		return platform.Transient
	case status >= 400:
		return platform.InvalidRequest
	}
	return platform.Transient // e.g. a 2xx whose body did not decode
}

// classify turns the SDK's error into a *platform.Error. Nothing in it
// holds a credential: messages and the underlying error's text are
// scrubbed of every credential the client has used.
func (c *Client) classify(op string, err error) *platform.Error {
	pe := &platform.Error{Kind: platform.Transient, Op: op}
	var header http.Header
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.Response.Response != nil {
		pe.Status = re.HTTPStatusCode()
		header = re.Response.Header
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		pe.Code, pe.Message = ae.ErrorCode(), ae.ErrorMessage()
	}
	var ce *credentialsError
	var ip smithy.InvalidParamsError
	var se *smithy.SerializationError
	switch {
	case errors.As(err, &ce):
		// Missing or unusable credentials; a retrieval cut short by the
		// call's deadline or cancellation is only transient.
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			pe.Kind = platform.Denied
			pe.Message = "no usable AWS credentials"
		}
	case pe.Code != "":
		if k, ok := kindOfCode(op, pe.Code); ok {
			pe.Kind = k
		} else if pe.Status != 0 {
			pe.Kind = kindOfStatus(pe.Status)
		}
	case pe.Status != 0:
		pe.Kind = kindOfStatus(pe.Status)
	case errors.As(err, &ip):
		pe.Kind = platform.InvalidParameter
		pe.Message = ip.Error()
	case errors.As(err, &se):
		// The SDK could not encode the input (an empty URI member).
		pe.Kind = platform.InvalidParameter
		pe.Message = se.Error()
	default:
		// Timeouts, cancellation, connection errors, an answer that broke
		// off: the call may or may not have taken effect.
		if errors.Is(err, context.DeadlineExceeded) {
			pe.Message = fmt.Sprintf("no answer within %v", c.timeout)
		}
	}
	if pe.Kind == platform.Throttled && header != nil {
		pe.RetryAfter, _ = platform.ParseRetryAfter(header.Get("Retry-After"), time.Now())
	}
	pe.Message = c.scrub(pe.Message)
	pe.Err = err
	if text := err.Error(); c.scrub(text) != text {
		// The chain would show a credential: keep only its scrubbed text.
		pe.Err = errors.New(c.scrub(text))
	}
	return pe
}

// scrub replaces every credential the client has used in s.
func (c *Client) scrub(s string) string {
	if c.creds == nil || s == "" {
		return s
	}
	return c.creds.scrub(s)
}

// credentialsProvider wraps the SDK's credentials provider: it marks its
// failures (so that they are classified Denied) and remembers the
// credentials it handed out, so that no error text ever shows them.
type credentialsProvider struct {
	inner aws.CredentialsProvider

	mu   sync.Mutex
	seen []string // recent access key ids, secrets and session tokens
}

// Retrieve implements aws.CredentialsProvider.
func (p *credentialsProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := p.inner.Retrieve(ctx)
	if err != nil {
		return creds, &credentialsError{err: err}
	}
	p.remember(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	return creds, nil
}

// IsCredentialsProvider lets aws.IsCredentialsProvider see the wrapped
// provider.
func (p *credentialsProvider) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	return aws.IsCredentialsProvider(p.inner, target)
}

// maxSeen bounds the remembered secrets (a few rotations' worth).
const maxSeen = 12

func (p *credentialsProvider) remember(secrets ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range secrets {
		if len(s) < 4 || slices.Contains(p.seen, s) {
			continue
		}
		p.seen = append(p.seen, s)
		if len(p.seen) > maxSeen {
			p.seen = p.seen[1:]
		}
	}
}

func (p *credentialsProvider) scrub(s string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, secret := range p.seen {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	return s
}

// credentialsError marks a failure to retrieve credentials.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "retrieving AWS credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }
