package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/sigv4"
)

// StopContactPath is where StopContact is served, as Amazon Connect does.
const StopContactPath = "/contact/stop"

// Defaults of StopContactConfig.
const (
	// DefaultAPIWait is how long a request waits for its result.
	DefaultAPIWait = 10 * time.Second
	// DefaultAPITokenTTL is the lifetime of a minted security-user token.
	DefaultAPITokenTTL = 2 * time.Minute
)

// maxStopContactBody bounds a request body: a StopContact body of the
// largest allowed fields is far smaller.
const maxStopContactBody = 64 << 10

// signingName is Amazon Connect's SigV4 service name.
const signingName = "connect"

// invocationIDHeader is the header the AWS SDKs send with a random ID per
// operation call, the same on every retry of that call.
const invocationIDHeader = "Amz-Sdk-Invocation-Id"

// StopContactConfig configures the StopContact handler.
type StopContactConfig struct {
	// Client publishes the requests and waits for their results. Required.
	Client *client.Client
	// Keys are the access keys that may sign requests. Required.
	Keys *APIKeys
	// TokenKey, when set, mints for every request a security-user token
	// (sub "apikey:<id>", exp TokenTTL ahead) that grants contact:Stop on
	// that one contact, for workers that have authorization on. Nil: the
	// requests carry no token (workers with authorization off).
	TokenKey *auth.SigningKey
	// TokenTTL is the lifetime of a minted token. Default
	// DefaultAPITokenTTL.
	TokenTTL time.Duration
	// Wait is how long a request waits for its result before it is answered
	// 500 InternalServiceException (the request goes on). Default
	// DefaultAPIWait.
	Wait time.Duration
	// Region, when set, is the only region signatures may be scoped to;
	// empty accepts any (the signature covers the region it names).
	Region string
	// Logger is named "stopcontact" by the handler. Default: no logs.
	Logger *zap.Logger
}

func (c *StopContactConfig) setDefaults() {
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultAPITokenTTL
	}
	if c.Wait <= 0 {
		c.Wait = DefaultAPIWait
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate reports a missing Client or Keys, and keys that hold none.
func (c StopContactConfig) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("httpapi: StopContactConfig.Client is required"))
	}
	if c.Keys == nil || c.Keys.Len() == 0 {
		errs = append(errs, errors.New("httpapi: StopContactConfig.Keys is required and must hold a key"))
	}
	return errors.Join(errs...)
}

// StopContact serves POST /contact/stop: Amazon Connect's StopContact on
// its REST-JSON wire protocol, as the AWS SDKs send it, so that code written
// against Amazon Connect works with its endpoint set to contactstop.
//
// A request must be signed with AWS Signature Version 4 (service
// "connect", any region unless configured, X-Amz-Date within 15 minutes,
// the body's hash included) by one of the configured access keys, whose
// grants must permit contact:Stop on the contact
// (instance/<InstanceId>/contact/<ContactId>). Its amz-sdk-invocation-id
// header, the same for every retry of one SDK call, is the requestId, so a
// retry yields the first attempt's outcome. The handler publishes the
// request, waits for its result and answers as Amazon does:
//
//	contact.stopped                                 200 {}
//	CONTACT_NOT_FOUND                               410 ContactNotFoundException
//	RESOURCE_NOT_FOUND                              404 ResourceNotFoundException
//	INVALID_PARAMETER                               400 InvalidParameterException
//	INVALID_REQUEST, no amz-sdk-invocation-id       400 InvalidRequestException
//	INVALID_SECURITY_USER, UNAUTHORIZED,
//	  a refused signature, no grant                 403 AccessDeniedException
//	INTERNAL_ERROR, no result within Wait           500 InternalServiceException
//
// Errors carry the X-Amzn-ErrorType header and a {"message": …} body, and
// every answer an x-amzn-RequestId (the requestId, when there is one). A
// 500 means the request goes on: sending it again (an SDK retry does) is
// safe and yields its outcome.
type StopContact struct {
	cfg      StopContactConfig
	verifier sigv4.Verifier
	log      *zap.Logger
}

// NewStopContact returns the handler, or the configuration's problems.
func NewStopContact(cfg StopContactConfig) (*StopContact, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &StopContact{
		cfg:      cfg,
		verifier: sigv4.Verifier{Service: signingName, Region: cfg.Region, Secret: cfg.Keys.secret},
		log:      cfg.Logger.Named("stopcontact"),
	}, nil
}

// Register adds POST /contact/stop to mux.
func (h *StopContact) Register(mux *http.ServeMux) {
	mux.Handle(http.MethodPost+" "+StopContactPath, h)
}

// stopContactInput is StopContact's request body (the SDK's
// awsRestjson1_serializeOpDocumentStopContactInput).
type stopContactInput struct {
	ContactID        *string `json:"ContactId"`
	InstanceID       *string `json:"InstanceId"`
	DisconnectReason *struct {
		Code *string `json:"Code"`
	} `json:"DisconnectReason"`
}

// apiError is an answer other than 200.
type apiError struct {
	status  int
	code    string // the exception type, X-Amzn-ErrorType
	message string
}

func errorOf(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

// The exception types of the answers.
const (
	excContactNotFound  = "ContactNotFoundException"
	excResourceNotFound = "ResourceNotFoundException"
	excInvalidParameter = "InvalidParameterException"
	excInvalidRequest   = "InvalidRequestException"
	excAccessDenied     = "AccessDeniedException"
	excInternal         = "InternalServiceException"
)

// ServeHTTP handles one StopContact call.
func (h *StopContact) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := r.Header.Get(invocationIDHeader)
	log := h.log.With(zap.String("request_id", requestID))
	if e := h.serve(r, requestID, log); e != nil {
		writeError(w, requestID, e)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if requestID != "" {
		w.Header().Set("X-Amzn-Requestid", requestID)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "{}")
}

// serve decides the call's answer: nil for 200.
func (h *StopContact) serve(r *http.Request, requestID string, log *zap.Logger) *apiError {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxStopContactBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errorOf(http.StatusBadRequest, excInvalidRequest, fmt.Sprintf("The request body is larger than %d bytes.", maxStopContactBody))
		}
		return errorOf(http.StatusBadRequest, excInvalidRequest, "The request body could not be read.")
	}
	keyID, err := h.verifier.Verify(r, body)
	if err != nil {
		var se *sigv4.Error
		if !errors.As(err, &se) {
			se = &sigv4.Error{Code: sigv4.CodeIncomplete, Message: "The request signature could not be checked."}
		}
		log.Info("StopContact refused: signature", zap.String("reason", se.Code))
		return errorOf(http.StatusForbidden, excAccessDenied, se.Message)
	}
	key := h.cfg.Keys.Key(keyID)
	log = log.With(zap.String("access_key_id", keyID))

	var in stopContactInput
	if err := decodeObject(body, &in); err != nil {
		return errorOf(http.StatusBadRequest, excInvalidRequest, "The request body is not a JSON object of StopContact's fields: "+err.Error())
	}
	if requestID == "" {
		return errorOf(http.StatusBadRequest, excInvalidRequest,
			"The amz-sdk-invocation-id header is required: it identifies the call across retries (the AWS SDKs send it).")
	}
	req := events.StopRequest{RequestID: requestID, ContactID: deref(in.ContactID), InstanceID: deref(in.InstanceID)}
	if in.DisconnectReason != nil {
		req.DisconnectReason = deref(in.DisconnectReason.Code)
	}
	log = log.With(zap.String("contact_id", req.ContactID), zap.String("instance_id", req.InstanceID))
	if err := req.Validate(); err != nil {
		return validationAnswer(err)
	}
	resource := auth.ContactResource(req.InstanceID, req.ContactID)
	if !key.Allows(auth.ActionStop, resource) {
		log.Info("StopContact refused: the key has no grant", zap.String("resource", resource))
		return errorOf(http.StatusForbidden, excAccessDenied,
			"The access key "+keyID+" is not authorized to perform contact:Stop on "+resource+".")
	}
	if h.cfg.TokenKey != nil {
		token, err := h.mint(key, req.InstanceID, req.ContactID)
		if err != nil {
			log.Error("StopContact: minting the security-user token", zap.Error(err))
			return errorOf(http.StatusInternalServerError, excInternal, "The request could not be authorized for the workers.")
		}
		req.SecurityUser = token
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Wait)
	defer cancel()
	opts := client.StopOptions{Wait: true}
	if tp := r.Header.Get(events.HeaderTraceparent); events.ValidTraceparent(tp) {
		opts.Traceparent = tp
	}
	if id := r.Header.Get(events.HeaderCorrelationID); len(id) <= events.MaxCorrelationIDBytes {
		opts.CorrelationID = id
	}
	_, res, err := h.cfg.Client.Stop(ctx, req, opts)
	if err != nil {
		var ve *events.ValidationError
		if errors.As(err, &ve) {
			return validationAnswer(ve)
		}
		if errors.Is(err, client.ErrNoResult) {
			log.Warn("StopContact: no result in time; the request goes on", zap.Duration("wait", h.cfg.Wait))
			return errorOf(http.StatusInternalServerError, excInternal,
				fmt.Sprintf("No result within %s; the request goes on, and sending it again is safe.", h.cfg.Wait))
		}
		log.Error("StopContact: publishing the request", zap.Error(err))
		return errorOf(http.StatusInternalServerError, excInternal, "The request could not be published; sending it again is safe.")
	}
	if res.Stopped != nil {
		log.Info("StopContact: stopped", zap.String("previous_state", res.Stopped.PreviousState))
		return nil
	}
	f := res.Failed
	log.Info("StopContact: failed", zap.String("reason_code", string(f.ReasonCode)), zap.Bool("retryable", f.Retryable))
	return failureAnswer(f)
}

// mint returns a security-user token for the key that grants stopping the
// one contact.
func (h *StopContact) mint(key *APIKey, instanceID, contactID string) (string, error) {
	now := time.Now()
	return auth.Issue(*h.cfg.TokenKey, auth.Claims{
		Subject:   key.String(),
		IssuedAt:  now,
		ExpiresAt: now.Add(h.cfg.TokenTTL),
		Grants: []auth.Grant{{
			Actions:   []auth.Action{auth.ActionStop},
			Resources: []string{auth.ContactResource(instanceID, "") + auth.EscapePattern(contactID)},
		}},
	})
}

// failureAnswer maps a failure's reason code to Amazon's answer (SPEC,
// HTTP API).
func failureAnswer(f *events.StopFailed) *apiError {
	switch f.ReasonCode {
	case events.ReasonContactNotFound:
		return errorOf(http.StatusGone, excContactNotFound, f.Message)
	case events.ReasonResourceNotFound:
		return errorOf(http.StatusNotFound, excResourceNotFound, f.Message)
	case events.ReasonInvalidParameter:
		return errorOf(http.StatusBadRequest, excInvalidParameter, f.Message)
	case events.ReasonInvalidRequest:
		return errorOf(http.StatusBadRequest, excInvalidRequest, f.Message)
	case events.ReasonInvalidSecurityUser, events.ReasonUnauthorized:
		return errorOf(http.StatusForbidden, excAccessDenied, string(f.ReasonCode)+": "+f.Message)
	}
	msg := f.Message
	if f.Retryable {
		msg += " (sending the request again is safe)"
	}
	return errorOf(http.StatusInternalServerError, excInternal, msg)
}

// validationAnswer maps a refused request to 400 with the wire's field
// names.
func validationAnswer(err error) *apiError {
	var ve *events.ValidationError
	if !errors.As(err, &ve) {
		return errorOf(http.StatusBadRequest, excInvalidRequest, err.Error())
	}
	field := map[string]string{
		"contactId":        "ContactId",
		"instanceId":       "InstanceId",
		"disconnectReason": "DisconnectReason.Code",
		"requestId":        "amz-sdk-invocation-id",
	}[ve.Field]
	if field == "" {
		field = ve.Field
	}
	msg := ve.Reason
	if field != "" {
		msg = field + " " + ve.Reason
	}
	if ve.Code == events.ReasonInvalidParameter {
		return errorOf(http.StatusBadRequest, excInvalidParameter, msg)
	}
	return errorOf(http.StatusBadRequest, excInvalidRequest, msg)
}

// writeError writes a REST-JSON error: the SDK takes the exception type
// from X-Amzn-ErrorType and the message from the body's "message".
func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-Errortype", e.code)
	if requestID != "" {
		h.Set("X-Amzn-Requestid", requestID)
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": e.message})
}

// decodeObject decodes a JSON object into v, refusing trailing data.
// Unknown fields are ignored, as Amazon's do.
func decodeObject(data []byte, v any) error {
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s must be a %s", strings.TrimPrefix(te.Field, "."), jsonKind(te))
		}
		return errors.New("not valid JSON")
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

func jsonKind(te *json.UnmarshalTypeError) string {
	if te.Type.Kind() == reflect.String {
		return "string"
	}
	return "object"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// CheckTokenKey mints a probe token with key and checks that v accepts it
// for contact:Stop: the tokens the StopContact API attaches would then be
// accepted by workers verifying with the same keys. The error says why not.
func CheckTokenKey(key auth.SigningKey, v *auth.Verifier) error {
	now := time.Now()
	token, err := auth.Issue(key, auth.Claims{
		Subject: "apikey:probe", IssuedAt: now, ExpiresAt: now.Add(time.Minute),
		Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/probe/contact/probe"}}},
	})
	if err != nil {
		return fmt.Errorf("mint a probe token: %w", err)
	}
	if _, err := v.Authorize(token, auth.ActionStop, auth.ContactResource("probe", "probe")); err != nil {
		return fmt.Errorf("the workers' keys do not accept its tokens (%s token refused): %w", key.Algorithm(), err)
	}
	return nil
}
