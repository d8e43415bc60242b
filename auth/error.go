package auth

import "github.com/contactstop/contactstop/events"

// Error is why a token was refused. Code is events.ReasonInvalidSecurityUser
// when the token itself is unusable and events.ReasonUnauthorized when it is
// valid but grants too little; Reason is a sentence for people that never
// contains the token. Match it with errors.As.
type Error struct {
	Code   events.ReasonCode
	Reason string
}

// Error returns "<code>: <reason>".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Reason }

func invalidToken(reason string) *Error {
	return &Error{Code: events.ReasonInvalidSecurityUser, Reason: reason}
}

func unauthorized(reason string) *Error {
	return &Error{Code: events.ReasonUnauthorized, Reason: reason}
}
