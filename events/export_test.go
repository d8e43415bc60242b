package events

// DecodeStopRequestJSON decodes through encoding/json only, as
// DecodeStopRequest does for a body that is not in the canonical form.
func DecodeStopRequestJSON(data []byte) (StopRequest, error) {
	if len(data) > MaxMessageSize {
		return DecodeStopRequest(data)
	}
	return decodeStopRequestJSON(data)
}
