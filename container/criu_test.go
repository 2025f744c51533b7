package container

import "testing"

func TestCriuReasonSkipsNoise(t *testing.T) {
	log := []byte(`(00.05) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.06) Dumping processes (pid: 1007 comm: init)
(00.15) Error (criu/sockets.c:640): sockets: Can't get 1:16 opt: Operation not supported
(00.16) Error (criu/util.c:656): exited, status=1
(00.17) Error (criu/cr-dump.c:2111): Dumping FAILED.
`)
	if got, want := criuReason(log, "fallback"), "sockets: Can't get 1:16 opt: Operation not supported"; got != want {
		t.Fatalf("criuReason = %q, want %q", got, want)
	}
	if got := criuReason([]byte("(00.01) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"), " criu failed "); got != "criu failed" {
		t.Fatalf("only noise: got %q, want the fallback", got)
	}
}

func TestVersionRE(t *testing.T) {
	for out, want := range map[string]string{"Version: 4.1.1\n": "4.1.1", "Version: 4.2\nGitID: v4.2\n": "4.2"} {
		m := versionRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%q: no version", out)
		}
		got := m[1] + "." + m[2]
		if m[3] != "" {
			got += "." + m[3]
		}
		if got != want {
			t.Errorf("%q: %s, want %s", out, got, want)
		}
	}
}
