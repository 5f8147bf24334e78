// Package agent knows how berth talks to the claude CLI: the argv that runs
// it headless (Args) and the parser that turns its stream-json output into
// log lines, progress, the session id and the final result (Parser, Lines).
//
// It does not run anything: the task runner executes the argv in the
// workspace container, feeds stdout through Lines into a Parser and decides
// what the outputs mean for the task record. Keeping the CLI's wire format
// here means a change in the CLI touches one package.
//
// Its tests use a stand-in claude program (testdata/fakeclaude) that emits
// the same stream-json format, because no model can be reached from tests.
package agent
