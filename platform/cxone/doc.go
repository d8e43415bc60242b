// Package cxone ends contacts on NICE CXone (the Admin API's end-contact
// operation) and lists its active contacts, authenticated with an access
// key pair exchanged for a bearer token.
//
// A Client is bound to one tenant (store.Binding's TenantID):
//
//   - its API host is discovered from the tenant:
//     GET https://cxone.niceincontact.com/.well-known/cxone-configuration?tenantId=T
//     answers api_endpoint (https://api-{area}.{domain}); Config.Endpoint
//     overrides it;
//   - the access key (CXONE_ACCESS_KEY_ID, CXONE_ACCESS_KEY_SECRET) is
//     exchanged at https://cxone.niceincontact.com/auth/token for a bearer
//     token (OAuth 2.0 password grant: username = access key id, password
//     = access key secret, with the registered application's client id and
//     secret, CXONE_CLIENT_ID and CXONE_CLIENT_SECRET); the token is cached,
//     renewed before it expires and once when the API answers 401;
//   - StopContact is POST {api}/inContactAPI/services/v34.0/contacts/{id}/end
//     (Studio's "End a Contact"); DescribeContact is the Reporting API's
//     GET …/contacts/{id} (and, for a contact queued or with an agent,
//     …/contacts/{id}/state-history for when it was queued); ListActive
//     is the Real-Time Data API's GET …/contacts/active, paged with top
//     and skip.
//
// Every answer is classified as a platform.Kind (Client.answerError has
// the table). The sources of these facts, and what is inferred where CXone
// documents nothing, are in the README's section "Ending contacts on NICE
// CXone". cxonetest is a fake of all of it for tests.
package cxone
