//go:build !unix

package server

// descriptorLimit is unknown off Unix: no connection cap is derived.
func descriptorLimit() int64 { return 0 }
