package gitop

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckRef reports whether ref is a name berth passes to git: git's
// check-ref-format rules with --allow-onelevel, and never a leading "-"
// (an option) or "+" (a forced refspec).
func CheckRef(ref string) error {
	bad := func(reason string) error { return &Error{Field: "ref", Reason: reason} }
	switch {
	case ref == "":
		return bad("must not be empty")
	case len(ref) > 255:
		return bad("longer than 255 bytes")
	case !utf8.ValidString(ref):
		return bad("not valid UTF-8")
	case ref[0] == '-':
		return bad("starts with '-'")
	case ref[0] == '+':
		return bad("starts with '+'")
	case ref == "@":
		return bad("is '@'")
	case strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/"):
		return bad("starts or ends with '/'")
	case strings.HasSuffix(ref, "."):
		return bad("ends with '.'")
	case strings.Contains(ref, ".."):
		return bad("contains '..'")
	case strings.Contains(ref, "@{"):
		return bad("contains '@{'")
	case strings.Contains(ref, "//"):
		return bad("contains '//'")
	}
	for _, r := range ref {
		if r < 0x20 || r == 0x7f || unicode.IsSpace(r) || strings.ContainsRune("~^:?*[\\", r) {
			return bad(fmt.Sprintf("contains %q", r))
		}
	}
	for _, c := range strings.Split(ref, "/") {
		if strings.HasPrefix(c, ".") {
			return bad("a component starts with '.'")
		}
		if strings.HasSuffix(c, ".lock") {
			return bad("a component ends with '.lock'")
		}
	}
	return nil
}

// checkURL accepts https, http, ssh and git URLs, scp-like user@host:path,
// and file URLs when allowed. Everything else — transport helpers such as
// ext::, local paths, option-like values — is refused.
func checkURL(raw string, o options) error {
	bad := func(reason string) error { return &Error{Field: "url", Reason: reason} }
	switch {
	case len(raw) > 2048:
		return bad("longer than 2048 bytes")
	case !utf8.ValidString(raw):
		return bad("not valid UTF-8")
	case strings.HasPrefix(raw, "-"):
		return bad("starts with '-'")
	}
	for _, r := range raw {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return bad("contains whitespace or a control character")
		}
	}
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		return checkSCP(raw)
	}
	switch strings.ToLower(scheme) {
	case "https", "http", "ssh", "git":
	case "file":
		if !o.allowFile {
			return bad("file URLs are not allowed")
		}
		if !strings.HasPrefix(rest, "/") {
			return bad("a file URL needs an absolute path: file:///path")
		}
		return nil
	default:
		return bad(fmt.Sprintf("scheme %q is not one of https, http, ssh, git", scheme))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL") // err repeats the URL, which may hold a secret
	}
	host := u.Hostname()
	switch {
	case host == "":
		return bad("no host")
	case strings.HasPrefix(host, "-"):
		return bad("host starts with '-'")
	case u.User != nil && strings.HasPrefix(u.User.Username(), "-"):
		return bad("user starts with '-'")
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return bad("contains a password; credentials must not be part of a URL that is logged")
	}
	return nil
}

// checkSCP accepts the scp-like form user@host:path that git treats as
// ssh. A "::" before the first "/" would make git pick a transport helper
// (ext::sh -c …) and is refused, like any local path.
func checkSCP(raw string) error {
	bad := func(reason string) error { return &Error{Field: "url", Reason: reason} }
	if i := strings.Index(raw, "::"); i >= 0 && !strings.Contains(raw[:i], "/") {
		return bad("transport helpers (<transport>::<address>) are not allowed")
	}
	userHost, repoPath, ok := strings.Cut(raw, ":")
	user, host, hasUser := strings.Cut(userHost, "@")
	switch {
	case !ok || !hasUser || strings.Contains(userHost, "/"):
		return bad("not an https, http, ssh or git URL, nor user@host:path")
	case user == "" || host == "" || repoPath == "":
		return bad("user@host:path needs a user, a host and a path")
	case strings.HasPrefix(user, "-") || strings.HasPrefix(host, "-"):
		return bad("user or host starts with '-'")
	}
	for _, r := range user + host {
		if !(r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return bad(fmt.Sprintf("user or host contains %q", r))
		}
	}
	return nil
}

// checkPaths cleans each path and refuses anything that is not a relative
// path inside the repository.
func checkPaths(paths []string) ([]string, error) {
	if len(paths) > 1000 {
		return nil, &Error{Field: "paths", Reason: "more than 1000 paths"}
	}
	out := make([]string, 0, len(paths))
	for i, p := range paths {
		bad := func(reason string) error { return &Error{Field: fmt.Sprintf("paths[%d]", i), Reason: reason} }
		switch {
		case p == "":
			return nil, bad("must not be empty")
		case len(p) > 4096:
			return nil, bad("longer than 4096 bytes")
		case !utf8.ValidString(p):
			return nil, bad("not valid UTF-8")
		case strings.HasPrefix(p, "-"):
			return nil, bad("starts with '-'")
		case path.IsAbs(p):
			return nil, bad("absolute; paths are relative to the repository")
		}
		for _, r := range p {
			if unicode.IsControl(r) {
				return nil, bad("contains a control character")
			}
		}
		clean := path.Clean(p)
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, bad("leaves the repository ('..')")
		}
		for _, c := range strings.Split(clean, "/") {
			if c == ".git" {
				return nil, bad("names the .git directory")
			}
		}
		out = append(out, clean)
	}
	return out, nil
}

// checkMessage refuses an empty commit message.
func checkMessage(msg string) error {
	bad := func(reason string) error { return &Error{Field: "message", Reason: reason} }
	switch {
	case strings.TrimSpace(msg) == "":
		return bad("a commit needs a message that is not blank")
	case len(msg) > 64<<10:
		return bad("longer than 64 KiB")
	case !utf8.ValidString(msg):
		return bad("not valid UTF-8")
	case strings.ContainsRune(msg, 0):
		return bad("contains a NUL byte")
	}
	return nil
}
