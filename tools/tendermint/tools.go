//go:build tools

// Package tools pins Tendermint v0.34.19 (the version open-autonomy checks for)
// so `make install` can build its binary with `go build` from this module.
// `go install github.com/tendermint/tendermint/cmd/tendermint@v0.34.19` needs the
// module's version list for its deprecation check, which the proxy here refuses.
package tools

import _ "github.com/tendermint/tendermint/cmd/tendermint"
