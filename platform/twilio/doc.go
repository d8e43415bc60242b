// Package twilio ends contacts on Twilio through the official twilio-go SDK
// (github.com/twilio/twilio-go): TaskRouter tasks of the bound workspace
// (WT… sids) are canceled, or completed once assigned, conditional on
// their ETag; voice calls (CA… sids) are hung up. It describes both, lists
// the workspace's active tasks for the store's inventory
// (platform.Lister), and reads TaskRouter's event callbacks
// (DecodeTaskEvent, ValidSignature).
//
// The error table — Twilio's answers, the platform.Kind each is, and the
// source of each row — is in errors.go.
package twilio
