// Package testsvc starts the real services berth's tests run against — a
// Postgres cluster and a redis-server (the protocol Valkey speaks) — on
// loopback, in temporary directories, and stops them when the test ends.
// A service that cannot be started fails the test; it is never skipped.
// Only tests use it.
package testsvc
