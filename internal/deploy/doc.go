// Package deploy holds berth's deployment tests: they check that the
// Dockerfile's final stage builds, runs and passes its health check on a
// local Docker engine, and that fly.toml agrees with the server's ports,
// paths, signal and shutdown timeout. It has no code of its own.
package deploy
