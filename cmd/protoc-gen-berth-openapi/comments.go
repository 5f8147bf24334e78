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
// "//", or "". Lines that are directives to buf ("buf:lint:ignore …") are
// left out: they are for the linter, not for readers.
func (comments) of(d protoreflect.Descriptor) string {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	var lines []string
	for l := range strings.SplitSeq(strings.TrimRight(loc.LeadingComments, "\n"), "\n") {
		l = strings.TrimPrefix(strings.TrimRight(l, " "), " ")
		if !strings.HasPrefix(l, "buf:") {
			lines = append(lines, l)
		}
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
