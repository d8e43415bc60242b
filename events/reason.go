package events

// ReasonCode says why a stop request failed. It is the reasonCode field of a
// StopFailed event. Every code contactstop uses is defined here, once; a
// consumer that meets a code it does not know (Valid reports false) should
// treat it as not retryable.
type ReasonCode string

// The reason codes, in the order of the specification.
const (
	// ReasonInvalidRequest: the message is not a JSON object, is larger than
	// MaxMessageSize, has a field of the wrong JSON type, or is not UTF-8
	// text. Anchored on Amazon Connect's InvalidRequestException (400).
	ReasonInvalidRequest ReasonCode = "INVALID_REQUEST"

	// ReasonInvalidParameter: a field breaks its constraints (missing, empty,
	// too long, bad characters), or the instance ID of the subject differs
	// from the body's. Amazon InvalidParameterException (400).
	ReasonInvalidParameter ReasonCode = "INVALID_PARAMETER"

	// ReasonResourceNotFound: the instance is not known to the store.
	// Amazon ResourceNotFoundException (404).
	ReasonResourceNotFound ReasonCode = "RESOURCE_NOT_FOUND"

	// ReasonContactNotFound: the contact does not exist, or is not active
	// (already ended, possibly by another request). Amazon
	// ContactNotFoundException (410); CXone "Invalid Contact ID".
	ReasonContactNotFound ReasonCode = "CONTACT_NOT_FOUND"

	// ReasonInvalidSecurityUser: authorization is on and the securityUser
	// token is missing, malformed, expired or badly signed. CXone "Invalid
	// Security User".
	ReasonInvalidSecurityUser ReasonCode = "INVALID_SECURITY_USER"

	// ReasonUnauthorized: the token is valid but does not grant stopping
	// this contact. CXone "Unauthorized"; IAM connect:StopContact.
	ReasonUnauthorized ReasonCode = "UNAUTHORIZED"

	// ReasonInternalError: a transient failure outlived every retry. The
	// only retryable code: publishing the same request again may succeed.
	// Amazon InternalServiceException (500).
	ReasonInternalError ReasonCode = "INTERNAL_ERROR"
)

// Retryable reports whether a request that failed with c may succeed if
// published again. Only ReasonInternalError is retryable; every other code,
// including an unknown one, is permanent.
func (c ReasonCode) Retryable() bool {
	return c == ReasonInternalError
}

// Valid reports whether c is one of the codes returned by ReasonCodes.
func (c ReasonCode) Valid() bool {
	switch c {
	case ReasonInvalidRequest, ReasonInvalidParameter, ReasonResourceNotFound,
		ReasonContactNotFound, ReasonInvalidSecurityUser, ReasonUnauthorized,
		ReasonInternalError:
		return true
	}
	return false
}

// ReasonCodes returns all reason codes in the order of the specification, in
// a new slice that the caller may modify.
func ReasonCodes() []ReasonCode {
	return []ReasonCode{
		ReasonInvalidRequest,
		ReasonInvalidParameter,
		ReasonResourceNotFound,
		ReasonContactNotFound,
		ReasonInvalidSecurityUser,
		ReasonUnauthorized,
		ReasonInternalError,
	}
}
