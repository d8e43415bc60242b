// Package genesys ends conversations on Genesys Cloud (disconnect) and
// lists those still in a queue (analytics conversation details query),
// authenticated with OAuth client credentials.
package genesys

import (
	_ "golang.org/x/oauth2/clientcredentials"
)
