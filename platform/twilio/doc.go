// Package twilio ends contacts on Twilio: TaskRouter tasks (canceled,
// conditional on their ETag) and voice calls (hung up), through the
// official twilio-go SDK.
package twilio

import (
	_ "github.com/twilio/twilio-go"
)
