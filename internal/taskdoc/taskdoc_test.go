package taskdoc_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/berthhq/berth/internal/taskdoc"
)

func TestDecodeAbsent(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "null", "  null \n"} {
		got, err := taskdoc.Decode[taskdoc.Progress]([]byte(raw))
		if got != nil || err != nil {
			t.Errorf("Decode(%q) = %v, %v; want nil, nil", raw, got, err)
		}
	}
}

func TestGitOperationJSON(t *testing.T) {
	t.Parallel()
	for _, op := range []taskdoc.GitOperation{"clone", "fetch", "pull", "checkout", "status", "diff", "log", "commit", "init"} {
		b, err := taskdoc.Encode(&taskdoc.GitOp{Operation: op})
		if err != nil {
			t.Fatal(err)
		}
		want := `{"operation":"` + op.EnumName() + `"}`
		if string(b) != want {
			t.Errorf("%s encodes as %s, want %s", op, b, want)
		}
		back, err := taskdoc.Decode[taskdoc.GitOp](b)
		if err != nil || back.Operation != op {
			t.Errorf("%s decodes as %+v, %v", b, back, err)
		}
	}
	if _, err := taskdoc.Encode(&taskdoc.GitOp{Operation: "rebase"}); err == nil {
		t.Error("an unknown operation was encoded")
	}
	for _, raw := range []string{`{"operation":10}`, `{"operation":-1}`, `{"operation":"clone"}`, `{"operation":true}`} {
		if got, err := taskdoc.Decode[taskdoc.GitOp]([]byte(raw)); err == nil {
			t.Errorf("%s decoded as %+v", raw, got)
		}
	}
}

func TestDetails(t *testing.T) {
	t.Parallel()
	got, err := taskdoc.Details(map[string]any{"n": 3, "s": "x", "u": map[string]int{"a": 1}, "l": []string{"p"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": 3.0, "s": "x", "u": map[string]any{"a": 1.0}, "l": []any{"p"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Details = %#v, want %#v", got, want)
	}
	if _, err := taskdoc.Details(map[string]any{"bad": math.NaN()}); err == nil {
		t.Error("NaN made details")
	}
}

func TestFailureError(t *testing.T) {
	t.Parallel()
	f := &taskdoc.Failure{Code: "NO_SESSION", Message: "gone"}
	if f.Error() != "NO_SESSION: gone" {
		t.Errorf("Error() = %q", f.Error())
	}
}
