package worker_test

import "github.com/stretchr/testify/assert"

type assertT = assert.CollectT

func assertNoError(c *assert.CollectT, err error) bool { return assert.NoError(c, err) }
