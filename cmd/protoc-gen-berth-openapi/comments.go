package main

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// comments reads the proto comments, which arrive in the request's
// SourceCodeInfo (the compiled Go descriptors drop them). A leading comment
// is the documentation; detached and trailing comments are not.
type comments struct{}

// of returns d's leading comment, each line trimmed of the one space after
// "//", or "".
func (comments) of(d protoreflect.Descriptor) string {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	lines := strings.Split(strings.TrimRight(loc.LeadingComments, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(strings.TrimRight(l, " "), " ")
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
