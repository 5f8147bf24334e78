package sandboxtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// ImageRepository is the repository of the test image; its tag is a hash of
// everything the image is made from.
const ImageRepository = "berth-test/busybox"

// recipeVersion changes the image's tag when the recipe below changes.
const recipeVersion = "berth-test-busybox/1"

// passwd and group give the image root and a non-root user berth (uid and
// gid 1000), as a production workspace image has.
const (
	// #nosec G101 -- G101: test data, not a credential
	passwd = "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1000:berth:/home/berth:/bin/sh\n"
	group  = "root:x:0:\nberth:x:1000:\n"
)

var testImage struct {
	once sync.Once
	ref  string
	err  error
}

// Image returns the reference of a small workspace image on Engine's
// engine: a static busybox with a link for each of its applets (sh, sleep,
// grep, ps, cat, id…), /tmp, /workspace, /etc/passwd and /etc/group with
// root and a user berth (1000:1000), and PATH set. Nothing is pulled: it is
// imported from a root filesystem made here from /usr/bin/busybox
// (Debian: busybox-static), once per test binary, and kept on the engine
// under a tag that is a hash of its recipe, so later runs reuse it. Without
// a static busybox the test is skipped (failed under CI=true).
func Image(t testing.TB) string {
	t.Helper()
	cli := Engine(t)
	testImage.once.Do(func() { testImage.ref, testImage.err = ensureImage(cli) })
	if testImage.err != nil {
		if errors.Is(testImage.err, errNoBusybox) {
			unavailable(t, "test image: %v", testImage.err)
		}
		t.Fatalf("test image: %v", testImage.err)
	}
	return testImage.ref
}

var errNoBusybox = errors.New("no static busybox (Debian: busybox-static)")

// rootfs is the test image's file system, but for busybox's content.
type rootfs struct {
	busybox []byte
	entries []tar.Header
	files   map[string]string // path → content, for small text files
}

func ensureImage(cli *client.Client) (string, error) {
	fs, err := newRootfs()
	if err != nil {
		return "", err
	}
	ref := ImageRepository + ":" + fs.hash()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), "berth-test-image.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil // another test binary imported it meanwhile
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fs.write(pw)) }()
	body, err := cli.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			`CMD ["/bin/sh"]`,
		},
	})
	if err != nil {
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		pr.CloseWithError(err)
		return "", fmt.Errorf("importing %s: %w", ref, err)
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("importing %s: %w", ref, err)
		}
		if m.Error != "" {
			return "", fmt.Errorf("importing %s: %s", ref, m.Error)
		}
	}
	if _, err := cli.ImageInspect(ctx, ref); err != nil {
		return "", fmt.Errorf("imported %s but cannot find it: %w", ref, err)
	}
	return ref, nil
}

func newRootfs() (*rootfs, error) {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		bin = "/usr/bin/busybox"
	}
	// #nosec G304 -- G304: a file this test support made or was pointed at by the test
	content, err := os.ReadFile(bin)
	if err != nil {
		return nil, errNoBusybox
	}
	// A dynamically linked busybox would need its libraries in the image.
	if f, err := elf.NewFile(bytes.NewReader(content)); err != nil {
		return nil, fmt.Errorf("%w: %s is not an ELF binary", errNoBusybox, bin)
	} else if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		return nil, fmt.Errorf("%w: %s is dynamically linked", errNoBusybox, bin)
	}
	// #nosec G204 -- G204: test support starting the service binaries and commands it builds the argv of
	list, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bin, err)
	}

	fs := &rootfs{busybox: content, files: map[string]string{"etc/passwd": passwd, "etc/group": group}}
	dirs := map[string]bool{}
	dir := func(name string, mode int64, uid int) {
		dirs[name] = true
		fs.entries = append(fs.entries, tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid})
	}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "home", "proc", "sys", "dev", "var", "workspace"} {
		dir(d, 0o755, 0)
	}
	dir("tmp", 0o1777, 0)
	dir("root", 0o700, 0)
	dir("home/berth", 0o755, 1000)
	fs.entries = append(fs.entries, tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(content))})
	for _, name := range []string{"etc/passwd", "etc/group"} {
		fs.entries = append(fs.entries, tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(fs.files[name]))})
	}
	applets := strings.Fields(string(list))
	slices.Sort(applets)
	for _, a := range slices.Compact(applets) {
		a = strings.TrimPrefix(path.Clean("/"+a), "/")
		if a == "bin/busybox" || a == "" {
			continue
		}
		for d := path.Dir(a); d != "." && !dirs[d]; d = path.Dir(d) {
			dir(d, 0o755, 0)
		}
		fs.entries = append(fs.entries, tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777})
	}
	return fs, nil
}

// hash names the image by everything it is made of.
func (fs *rootfs) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", recipeVersion)
	h.Write(fs.busybox)
	for _, e := range fs.entries {
		fmt.Fprintf(h, "%c %s %s %o %d\n", e.Typeflag, e.Name, e.Linkname, e.Mode, e.Uid)
		h.Write([]byte(fs.files[e.Name]))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// write writes the file system as a tar stream.
func (fs *rootfs) write(w io.Writer) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	for _, e := range fs.entries {
		e.ModTime = mtime
		e.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e); err != nil {
			return err
		}
		switch {
		case e.Name == "bin/busybox":
			if _, err := tw.Write(fs.busybox); err != nil {
				return err
			}
		case fs.files[e.Name] != "":
			if _, err := io.WriteString(tw, fs.files[e.Name]); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
