package server

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// flatTypes are messages decodeFlat is tried on: flat strings, optional
// strings beside other kinds, no fields, oneofs (of messages, and of
// strings), a required string and a well-known type.
var flatTypes = append([]proto.Message{
	&berthv1.GetWorkspaceRequest{},
	&berthv1.UpdateWorkspaceRequest{},
	&berthv1.LoginRequest{},
	&berthv1.LogoutRequest{},
	&berthv1.StreamTaskLogsResponse{},
	&structpb.Value{},
}, proto2Messages()...)

// proto2Messages are messages berth's API does not have: "Choice", whose
// strings a and b are a oneof beside c, and "Required", whose r is required.
func proto2Messages() []proto.Message {
	str := func(name string, n int32, label descriptorpb.FieldDescriptorProto_Label, oneof *int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n), Label: label.Enum(),
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), OneofIndex: oneof,
		}
	}
	optional, required := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL, descriptorpb.FieldDescriptorProto_LABEL_REQUIRED
	file, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("flat_test.proto"), Package: proto.String("flattest"), Syntax: proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:      proto.String("Choice"),
			Field:     []*descriptorpb.FieldDescriptorProto{str("a", 1, optional, proto.Int32(0)), str("b", 2, optional, proto.Int32(0)), str("c", 3, optional, nil)},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("pick")}},
		}, {
			Name:  proto.String("Required"),
			Field: []*descriptorpb.FieldDescriptorProto{str("r", 1, required, nil), str("o", 2, optional, nil)},
		}},
	}, nil)
	if err != nil {
		panic(err)
	}
	msgs := file.Messages()
	return []proto.Message{dynamicpb.NewMessage(msgs.Get(0)), dynamicpb.NewMessage(msgs.Get(1))}
}

// flatInputs are request bodies: the plain ones decodeFlat reads, and the
// others it must leave to protojson.
var flatInputs = []string{
	`{"id":"0b5f4d5e-6a7c-4b8e-9f10-111213141516"}`,
	" \t\n{ \"id\" :\r\"x\" } \n",
	`{}`, `{ }`, `{"id":""}`, `{"name":""}`, `{"git_url":"g","gitUrl":"h"}`, `{"gitUrl":"h"}`,
	`{"email":"a@b.c","password":"p"}`, `{"password":"p","email":"a@b.c"}`,
	`{"id":"a","id":"b"}`, `{"id":"a",}`, `{"id":"a"`, `{"id":"a"}x`, `{"id":"a"}{}`, `{"id":null}`,
	`{"id":"a\"b"}`, `{"id":"\u0041"}`, `{"id":"é"}`, "{\"id\":\"a\x7fb\"}", "{\"id\":\"\x01\"}",
	`{"unknown":"x"}`, `{"id":1}`, `{"tags":"x"}`, `{"id":["a"]}`, `{"ID":"x"}`, `[]`, `"id"`, ``, `null`,
	`{"name":"a","description":"b","git_url":"c","branch":"d","image":"e","id":"f"}`,
	`{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8","i":"9"}`,
	`{"string_value":"s"}`, `{"stringValue":"s"}`, `{"line":"x"}`, `{"[ext]":"x"}`,
	`{"a":"x","b":"y"}`, `{"a":"x"}`, `{"c":"z","b":"x"}`, `{"c":"z"}`, `{"o":"x"}`, `{"r":"x","o":"y"}`,
}

// checkFlat holds decodeFlat to protojson on data decoded into a message
// of typ's type, and returns whether decodeFlat decoded it.
func checkFlat(t *testing.T, typ proto.Message, data string) bool {
	t.Helper()
	// The message starts non-empty: decodeFlat must reset it as protojson
	// does, or leave it untouched when it declines.
	before := typ.ProtoReflect().New().Interface()
	_ = protojson.Unmarshal([]byte(`{"id":"old","email":"old","stringValue":"old"}`), before)
	got := proto.Clone(before)
	// As UnmarshalRead calls it: scratch is the spare capacity past data.
	body := append(make([]byte, 0, len(data)+64), data...)
	ok := decodeFlat(body, got, body[len(body):])
	want := proto.Clone(before)
	err := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal([]byte(data), want)
	switch {
	case ok && err != nil:
		t.Errorf("%T %q: decoded, but protojson refuses it: %v", typ, data, err)
	case ok && !proto.Equal(got, want):
		t.Errorf("%T %q: decoded %v, protojson %v", typ, data, got, want)
	case !ok && !proto.Equal(got, before):
		t.Errorf("%T %q: declined, but changed the message to %v", typ, data, got)
	}
	return ok
}

// TestDecodeFlatAsProtojson checks that decodeFlat decodes exactly what
// protojson (with connect's DiscardUnknown) decodes, to equal messages,
// and that it does decode the plain requests it is for.
func TestDecodeFlatAsProtojson(t *testing.T) {
	t.Parallel()
	for _, typ := range flatTypes {
		for _, in := range flatInputs {
			checkFlat(t, typ, in)
		}
	}
	for _, c := range []struct {
		typ proto.Message
		in  string
	}{
		{&berthv1.GetWorkspaceRequest{}, flatInputs[0]},
		{&berthv1.GetWorkspaceRequest{}, flatInputs[1]},
		{&berthv1.UpdateWorkspaceRequest{}, `{"name":""}`},
		{&berthv1.UpdateWorkspaceRequest{}, `{"gitUrl":"h"}`},
		{&berthv1.LoginRequest{}, `{"password":"p","email":"a@b.c"}`},
		{&berthv1.LogoutRequest{}, `{ }`},
		{flatTypes[len(flatTypes)-2], `{"c":"z"}`},
	} {
		if !checkFlat(t, c.typ, c.in) {
			t.Errorf("%T %q: not decoded by decodeFlat", c.typ, c.in)
		}
	}
}

// FuzzDecodeFlat holds decodeFlat to protojson on arbitrary bodies.
func FuzzDecodeFlat(f *testing.F) {
	for _, in := range flatInputs {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, data string) {
		for _, typ := range flatTypes {
			checkFlat(t, typ, data)
		}
	})
}

// failingReader fails every read with its error.
type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// TestMemoJSONUnmarshalRead checks the codec's decoding around
// decodeFlat: what protojson decodes, the connect codec's error for an
// empty body, and a read error returned as it is.
func TestMemoJSONUnmarshalRead(t *testing.T) {
	t.Parallel()
	plain := connectproto.NewJSONCodec()
	memo := newMemoJSON(plain)
	for _, in := range []string{flatInputs[0], `{"id":"a\"b"}`, `{"unknown":{"x":[1]},"id":"y"}`, `{"id":1}`, ``, `{"id":"a","id":"b"}`} {
		got, want := &berthv1.GetWorkspaceRequest{}, &berthv1.GetWorkspaceRequest{}
		gotErr := memo.UnmarshalRead(t.Context(), strings.NewReader(in), got)
		wantErr := plain.UnmarshalRead(t.Context(), strings.NewReader(in), want)
		if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Errorf("%q: error %v, connect's codec %v", in, gotErr, wantErr)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%q: decoded %v, connect's codec %v", in, got, want)
		}
	}
	capped := errors.New("read limit")
	if err := memo.UnmarshalRead(t.Context(), io.MultiReader(bytes.NewReader([]byte(`{"id"`)), failingReader{capped}), &berthv1.GetWorkspaceRequest{}); !errors.Is(err, capped) {
		t.Errorf("read error %v, want %v", err, capped)
	}
}

// BenchmarkDecodeRequest compares decoding GetWorkspace's request through
// the codec (decodeFlat) with protojson's decoder.
func BenchmarkDecodeRequest(b *testing.B) {
	body := []byte(`{"id":"0b5f4d5e-6a7c-4b8e-9f10-111213141516"}`)
	memo := newMemoJSON(connectproto.NewJSONCodec())
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := memo.UnmarshalRead(b.Context(), bytes.NewReader(body), &berthv1.GetWorkspaceRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := memo.JSONCodec.UnmarshalRead(b.Context(), bytes.NewReader(body), &berthv1.GetWorkspaceRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
