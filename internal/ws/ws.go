// Package ws serves berth's WebSocket endpoint, GET /ws: one connection
// that follows tasks and workspaces and runs commands, for clients that want
// both directions on one socket. It calls the same services as the RPCs and
// the SSE streams, with the same access rules and validation.
//
// The subprotocol is "berth.v1.json" (a handshake that does not offer it is
// refused). Every frame is a JSON text message shaped like the seeds'
// WSMessage, {type, action, id, data, timestamp}, plus two top-level fields
// used by subscriptions, channel and since:
//
//	→ {"type":"subscribe","id":"1","channel":"task:<id>","since":41}
//	← {"type":"subscribed","id":"1","channel":"task:<id>"}
//	← {"type":"event","channel":"task:<id>","action":"log","data":{…LogEntry…}}
//	← … "action":"status" | "progress" | "end" (TaskEnd, the last one)
//	→ {"type":"subscribe","id":"2","channel":"workspace:<id>"}
//	← {"type":"event","channel":"workspace:<id>","action":"workspace.status","data":{…WorkspaceEvent…}}
//	→ {"type":"unsubscribe","id":"3","channel":"task:<id>"}
//	← {"type":"unsubscribed","id":"3","channel":"task:<id>"}
//	→ {"type":"command","id":"4","action":"task.create","data":{…CreateTaskRequest…}}
//	← {"type":"result","id":"4","action":"task.create","data":{…CreateTaskResponse…}}
//	← {"type":"error","id":"4","action":"task.create","data":{"code":"invalid_argument","message":"…","reason":"VALIDATION_ERROR"}}
//	→ {"type":"ping","id":"5"}
//	← {"type":"pong","id":"5"}
//
// since is the last log seq the client has (0 or absent: the whole log);
// it resumes a task's log exactly where it was. Event and result data are
// the API messages as protojson with proto field names (snake_case), the
// same messages the Connect streams and RPCs send. Commands are task.create,
// task.continue (task.create with continue_task_id required), task.cancel,
// workspace.start, workspace.stop and workspace.get; data is the RPC's
// request as protojson.
//
// The connection authenticates at the upgrade, with the Authorization
// header, the X-API-Key header, the session cookie or a stream ticket
// (?ticket=) for the target "ws". Those credentials are checked again
// (through the auth cache) before every command and subscription and at
// every keep-alive ping: a logout, a revoked key or a disabled account
// closes the connection with 1008, and a role change applies at once.
//
// ws is a transport above the domain: it calls the task and workspace
// services as the RPCs do, and sends their one conversion of events to API
// messages (task.StreamResponse, WorkspaceEvent) as JSON written with
// stream.JSON, as SSE does. Its credentials are resolved and re-checked by
// stream.Auth, as SSE's are; refusals and error frames follow the fault
// table (fault.Classes).
package ws

import (
	"encoding/json"
	"time"
)

// Subprotocol is the only WebSocket subprotocol the endpoint speaks.
const Subprotocol = "berth.v1.json"

// Message is one frame, either way.
type Message struct {
	// Type is subscribe, unsubscribe, command or ping from the client;
	// subscribed, unsubscribed, event, result, error or pong from the server.
	Type string `json:"type"`
	// Action is a command's name, or an event's kind.
	Action string `json:"action,omitempty"`
	// ID is the client's id of a request; the answers to it carry it back.
	ID string `json:"id,omitempty"`
	// Channel is "task:<id>" or "workspace:<id>" (subscriptions, events).
	Channel string `json:"channel,omitempty"`
	// Since is the last log seq a task subscriber already has.
	Since int64 `json:"since,omitempty"`
	// Data is a command's request or result, an event or an ErrorBody.
	Data json.RawMessage `json:"data,omitempty"`
	// Timestamp is when the server sent the frame; a live log line's
	// event, whose frame every subscriber of the task shares, carries when
	// it was encoded, as it was first sent.
	Timestamp time.Time `json:"timestamp,omitzero"`
}

// ErrorBody is the data of an error frame.
type ErrorBody struct {
	// Code is the Connect code, as Connect spells it ("invalid_argument").
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// Reason is the seeds' error code (ErrorInfo.reason of the RPCs).
	Reason string `json:"reason"`
}
