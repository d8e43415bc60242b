package events

// ValidationError is a permanent failure of a request's shape or fields. Its
// Code and Reason are what the worker puts in the StopFailed event, so a
// request that fails validation is answered at once and never retried. Match
// it with errors.As.
type ValidationError struct {
	// Code is ReasonInvalidRequest (the message or a value cannot be read)
	// or ReasonInvalidParameter (a value was read and breaks a constraint).
	Code ReasonCode
	// Field is the JSON name of the offending field, e.g. "contactId", or
	// "" when the message as a whole is at fault.
	Field string
	// Reason says what is wrong, for a person, e.g. "must be 1 to 256
	// characters, got 300".
	Reason string
}

// Error returns "<field>: <reason>", or just the reason when Field is empty.
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

func invalidRequest(field, reason string) *ValidationError {
	return &ValidationError{Code: ReasonInvalidRequest, Field: field, Reason: reason}
}

func invalidParameter(field, reason string) *ValidationError {
	return &ValidationError{Code: ReasonInvalidParameter, Field: field, Reason: reason}
}
