package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/contactstop/contactstop/events"
)

// Error codes of the JSON API that are not reason codes. Where a reason
// code says it (INVALID_REQUEST, INVALID_PARAMETER, RESOURCE_NOT_FOUND,
// INVALID_SECURITY_USER, UNAUTHORIZED, INTERNAL_ERROR) the reason code is
// the error code.
const (
	v1CodeNotFound         = "NOT_FOUND"
	v1CodeBulkNotFound     = "BULK_NOT_FOUND"
	v1CodeBulkFinished     = "BULK_FINISHED"
	v1CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	v1CodeUnavailable      = "UNAVAILABLE"
)

// v1Error is the body of every error answer.
type v1Error struct {
	Error v1ErrorDetail `json:"error"`
}

type v1ErrorDetail struct {
	// Code is a reason code (events.ReasonCode) or one of the API's own.
	Code string `json:"code"`
	// Message explains the error to a person.
	Message string `json:"message"`
	// Field names the offending field or parameter, when one is.
	Field string `json:"field,omitempty"`
}

func v1WriteError(w http.ResponseWriter, status int, code, message, field string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="contactstop"`)
	}
	v1WriteJSON(w, status, v1Error{Error: v1ErrorDetail{Code: code, Message: message, Field: field}})
}

// v1WriteValidation answers 400 with a validation error's code and field.
func v1WriteValidation(w http.ResponseWriter, ve *events.ValidationError) {
	v1WriteError(w, http.StatusBadRequest, string(ve.Code), ve.Error(), ve.Field)
}

// writeInternal answers 500 for a failure of the store or of NATS; the
// cause is logged, and only said in general terms.
func (a *V1) writeInternal(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.log.Warn("v1: "+what, v1ZapPath(r), v1ZapErr(err))
	v1WriteError(w, http.StatusInternalServerError, string(events.ReasonInternalError),
		what+" failed; try again (the server log has the cause)", "")
}

func v1WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// v1MaxBody is the largest request body read: a bulk filter of 1000 queue
// IDs of 256 characters fits.
const v1MaxBody = 512 << 10

// v1DecodeBody decodes one JSON object into v, refusing unknown fields,
// trailing data and bodies over v1MaxBody. On failure it answers 400
// INVALID_REQUEST naming the field and returns false.
func v1DecodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		v1WriteError(w, http.StatusUnsupportedMediaType, string(events.ReasonInvalidRequest), "the body must be application/json, got "+v1Short(ct), "")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, v1MaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var (
		te *json.UnmarshalTypeError
		se *json.SyntaxError
		me *http.MaxBytesError
	)
	field, msg := "", "the body is not a JSON object of the expected shape: "+err.Error()
	switch {
	case errors.Is(err, io.EOF):
		msg = "the body is empty; a JSON object is required"
	case errors.As(err, &te):
		field = te.Field
		msg = fmt.Sprintf("%s: must be %s, got %s", te.Field, v1JsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		msg = fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &me):
		msg = fmt.Sprintf("the body is larger than %d bytes", v1MaxBody)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		msg = fmt.Sprintf("unknown field %q", field)
	}
	v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidRequest), msg, field)
	return false
}

func v1JsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int", "int64", "uint64", "float64":
		return "a number"
	}
	return kind
}
