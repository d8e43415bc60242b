// Package cxone ends contacts on NICE CXone (the Admin API's end-contact
// operation) and lists its active contacts, authenticated with an access
// key pair exchanged for a bearer token.
package cxone
