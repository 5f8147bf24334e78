package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// readPassword reads a line from the terminal f with echo off. Echo goes
// off before the prompt is written, so nothing typed as soon as the prompt
// shows can be echoed (term.ReadPassword turns it off only after the
// caller's prompt, which left a window a fast typist or a script hits).
func readPassword(f *os.File, prompt io.Writer) (string, error) {
	fd := int(f.Fd()) // #nosec G115 -- a file descriptor fits in an int
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old) // #nosec G104 -- restoring the terminal; nothing to do if it fails
	fmt.Fprint(prompt, "Password: ")
	line, err := bufio.NewReader(f).ReadString('\n')
	fmt.Fprintln(prompt)
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
