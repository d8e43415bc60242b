// Package genesys ends conversations on Genesys Cloud (the Platform API's
// conversation disconnect), describes them (the conversation API) and lists
// those in progress that were routed to a queue (the analytics
// conversation details query), authenticated with an OAuth client's client
// credentials grant (golang.org/x/oauth2/clientcredentials). It speaks the
// API with net/http: Genesys's Go SDK
// (github.com/mypurecloud/platform-client-sdk-go) is not available to this
// build. Package genesystest is its fake.
package genesys
