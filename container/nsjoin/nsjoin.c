// The namespace joiner behind vectl exec; see nsjoin.go for the protocol on the sync socket
// and proto.go for the join request, whose constants proto.h holds. Everything here runs before the Go runtime starts, in a process
// with a single thread, so it may join a mount namespace and fork freely.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "proto.h"
#include "wire.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static int syncfd = -1;

// send_msg writes one message (a packet on the SOCK_SEQPACKET sync socket), with fd attached
// when it is not -1.
static void send_msg(const char *msg, int fd)
{
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&u, 0, sizeof u);
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (sendmsg(syncfd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

// fail reports what went wrong (with errno) to vectl, or on stderr (the VE's console) in
// the init wrapper, and exits.
static void fail(const char *what)
{
	char msg[512];
	snprintf(msg, sizeof msg, "E%s: %s", what, strerror(errno));
	if (syncfd >= 0)
		send_msg(msg, -1);
	else
		dprintf(2, "vectl: %s\n", msg + 1);
	_exit(1);
}

// read_all reads exactly n bytes from fd.
static int read_all(int fd, char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

// open_pty allocates a pty of cols x rows from the VE's own devpts (this process is in the
// VE's mount namespace), sends its master to vectl, and makes its slave the controlling
// terminal and stdio.
static void open_pty(unsigned short cols, unsigned short rows)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail("open /dev/ptmx in the VE");
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail("unlock the pty");
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (slave < 0)
		fail("open the pty's peer");
	struct winsize ws = {.ws_col = cols, .ws_row = rows};
	if (cols && rows)
		ioctl(slave, TIOCSWINSZ, &ws);
	send_msg("T", master);
	close(master);
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		fail("make the pty the controlling terminal");
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			fail("dup2 the pty");
	if (slave > 2)
		close(slave);
}

// read_program reads a seccomp program (an array of struct sock_filter) from fd and closes
// it; fd -1 gives an empty program.
static struct sock_fprog read_program(int fd)
{
	struct sock_fprog prog = {0};
	if (fd < 0)
		return prog;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
	    st.st_size > 1 << 20) {
		errno = EINVAL;
		fail("read the seccomp program");
	}
	prog.len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
	prog.filter = malloc(st.st_size);
	if (!prog.filter || read_all(fd, (char *)prog.filter, st.st_size) < 0)
		fail("read the seccomp program");
	close(fd);
	return prog;
}

static int cap_last_cap(void)
{
	int last_cap = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last_cap) != 1 || last_cap > 63)
			last_cap = 40;
		fclose(f);
	}
	return last_cap;
}

static void set_caps(uint64_t eff, uint64_t prm, uint64_t inh, uint64_t bnd, int last_cap)
{
	for (int cap = 0; cap <= last_cap; cap++)
		if (!(bnd & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			fail("drop from the capability bounding set");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fail("clear the ambient capabilities");
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2] = {
		{.effective = (uint32_t)eff, .permitted = (uint32_t)prm, .inheritable = (uint32_t)inh},
		{.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(prm >> 32), .inheritable = (uint32_t)(inh >> 32)},
	};
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("set capabilities");
}

// request is the decoded join request (proto.go); its strings point into the packet.
struct request {
	uint32_t nsflags, bpfflags;
	uint64_t caps[4];
	int has_bpf, has_tty, pidfd, bpffd;
	const char *session, *cwd;
	unsigned short cols, rows;
	struct rlimit rl[64];
	int rlres[64], nrl;
	char **args;
};

// recv_request reads the one join request packet from the sync socket, with its descriptors
// (the init's pidfd, then the seccomp program), and decodes it. Anything unexpected fails.
static void recv_request(struct request *r)
{
	static char buf[NSJ_MAX_REQUEST];
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	ssize_t n;
	while ((n = recvmsg(syncfd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		_exit(1); // vectl gave up before sending anything
	int fds[2] = {-1, -1}, nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > 2)
				nfds = 2;
			memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
		}
	errno = EPROTO;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		fail("the join request was cut");
	memset(r, 0, sizeof *r);
	r->pidfd = fds[0];
	r->bpffd = -1;
	uint32_t version = 0;
	int nargs = 0, maxargs = (int)n / 5 + 1;
	r->args = calloc(maxargs + 1, sizeof(char *));
	if (!r->args)
		fail("allocate the command line");
	struct wire_attr a;
	size_t off = 0;
	int more;
	while ((more = wire_next(buf, (size_t)n, &off, &a)) > 0) {
		const char *str = wire_str(&a);
		switch (a.type) {
		case NSJ_ATTR_VERSION:
			if (a.len == 4)
				version = wire_u32(a.p);
			break;
		case NSJ_ATTR_NSFLAGS:
			if (a.len == 4)
				r->nsflags = wire_u32(a.p);
			break;
		case NSJ_ATTR_CAPS:
			if (a.len == 32)
				for (int i = 0; i < 4; i++)
					r->caps[i] = wire_u64(a.p + 8 * i);
			break;
		case NSJ_ATTR_BPF:
			if (a.len == 4) {
				r->has_bpf = 1;
				r->bpfflags = wire_u32(a.p);
			}
			break;
		case NSJ_ATTR_SESSION:
			if (str)
				r->session = str;
			break;
		case NSJ_ATTR_CWD:
			if (str)
				r->cwd = str;
			break;
		case NSJ_ATTR_TTY:
			if (a.len == 4) {
				r->has_tty = 1;
				r->cols = wire_u16(a.p);
				r->rows = wire_u16(a.p + 2);
			}
			break;
		case NSJ_ATTR_RLIMIT:
			if (a.len == 24 && r->nrl < 64) {
				r->rlres[r->nrl] = (int)wire_u32(a.p);
				r->rl[r->nrl].rlim_cur = wire_u64(a.p + 8);
				r->rl[r->nrl].rlim_max = wire_u64(a.p + 16);
				r->nrl++;
			}
			break;
		case NSJ_ATTR_ARG:
			if (str && nargs < maxargs)
				r->args[nargs++] = (char *)str;
			break;
		default:
			fail("the join request has an unknown attribute");
		}
	}
	if (more < 0)
		fail("the join request has a malformed attribute");
	if (version != NSJ_PROTO_VERSION)
		fail("the join request is of another version");
	if (nargs == 0 || !r->cwd || r->pidfd < 0)
		fail("the join request lacks its command, working directory or pidfd");
	if (r->has_bpf) {
		if (nfds < 2)
			fail("the join request lacks its seccomp program");
		r->bpffd = fds[1];
	} else if (nfds > 1) {
		close(fds[1]);
	}
}

void vectl_nsjoin(int argc, char **argv, char **envp)
{
	if (argc != 2 || strcmp(argv[1], NSJ_ARG) != 0)
		return;
	// Nothing in the VE may ptrace this process or open its /proc/PID/exe while it runs vectl's
	// code (the flag is inherited by the fork below and reset by the final execve).
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	syncfd = NSJ_SYNC_FD;
	fcntl(syncfd, F_SETFD, FD_CLOEXEC);
	struct request req;
	recv_request(&req);

	// Host-side reads first: the seccomp program and the kernel's last capability.
	struct sock_fprog prog = read_program(req.bpffd);
	int last_cap = cap_last_cap();

	// vectl writes one byte once this process is in the VE's cgroups; EOF means it gave up.
	char go;
	if (read(syncfd, &go, 1) != 1)
		_exit(1);
	if (setns(req.pidfd, (int)req.nsflags) < 0)
		fail("join the VE's namespaces");
	close(req.pidfd);
	// A new pid namespace applies to children only. CLONE_PARENT makes the command vectl's
	// own child, so that vectl waits for it and gets its exit status directly.
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
	if (pid < 0)
		fail("fork inside the VE");
	if (pid > 0) {
		char msg[32];
		snprintf(msg, sizeof msg, "P%d", pid);
		send_msg(msg, -1);
		_exit(0);
	}

	if (setsid() < 0)
		fail("setsid");
	// The VE's root: after joining a user-namespace VE's user namespace this makes the joiner
	// its root (host root is nobody there), before anything is created in the VE.
	if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		fail("set user and groups");
	// A session keyring of the VE's own, as libcontainer gives each process it starts.
	if (req.session && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, req.session) < 0 && errno != ENOSYS)
		fail("join the VE's session keyring");
	if (req.has_tty)
		open_pty(req.cols, req.rows);
	for (int i = 0; i < req.nrl; i++)
		if (setrlimit(req.rlres[i], &req.rl[i]) < 0)
			fail("set the VE's resource limits");
	if (chdir(req.cwd) < 0)
		fail("change to the working directory");
	// Without no_new_privs loading a filter needs CAP_SYS_ADMIN, so it comes before the
	// capabilities are dropped (libcontainer does the same).
	if (prog.filter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, req.bpfflags, &prog) < 0)
		fail("load the seccomp filter");
	set_caps(req.caps[0], req.caps[1], req.caps[2], req.caps[3], last_cap);
	// No descriptor of vectl's reaches the command (the sync socket closes at execve, which
	// tells vectl that the command runs).
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail("close_range");
	execvpe(req.args[0], req.args, envp);
	char what[256];
	snprintf(what, sizeof what, "exec %s", req.args[0]);
	fail(what);
}

// A cgroup v1 hierarchy of the init wrapper's message (NSJ_ATTR_CGROUP_RO/RW).
struct cgmount {
	const char *name, *source, *data;
	int rw;
};

// attr_strs reads n NUL-terminated strings that fill the attribute's payload from off on
// into f; only the last may be empty when last_empty.
static int attr_strs(const struct wire_attr *a, size_t off, const char **f, int n, int last_empty)
{
	for (int i = 0; i < n; i++) {
		const char *p = a->p + off;
		const char *nul = off < a->len ? memchr(p, 0, a->len - off) : NULL;
		if (!nul || (nul == p && !(last_empty && i == n - 1)))
			return -1;
		f[i] = p;
		off += (size_t)(nul - p) + 1;
	}
	return off == a->len ? 0 : -1;
}

// cgroup_attr reads "NAME\0SOURCE\0DATA\0" into c: three non-empty strings filling the
// attribute, NAME one path component.
static int cgroup_attr(const struct wire_attr *a, struct cgmount *c)
{
	const char *f[3];
	if (attr_strs(a, 0, f, 3, 0) < 0 || strchr(f[0], '/') || strlen(f[0]) > 200 || f[0][0] == '.')
		return -1;
	c->name = f[0];
	c->source = f[1];
	c->data = f[2];
	return 0;
}

// A mount of the init wrapper's message (NSJ_ATTR_MOUNT).
struct fsmount {
	unsigned long flags;
	const char *target, *source, *fstype, *data;
};

// mount_attr reads "FLAGS(u32) TARGET\0SOURCE\0FSTYPE\0DATA\0" into m (DATA may be
// empty; TARGET is absolute).
static int mount_attr(const struct wire_attr *a, struct fsmount *m)
{
	const char *f[4];
	if (a->len < 4 || attr_strs(a, 4, f, 4, 1) < 0 || f[0][0] != '/' || strlen(f[0]) > 200)
		return -1;
	m->flags = wire_u32(a->p);
	m->target = f[0];
	m->source = f[1];
	m->fstype = f[2];
	m->data = f[3][0] ? f[3] : NULL;
	return 0;
}

// mount_fs makes m, creating its target directory and the missing ones above it (in the
// VE's root: the wrapper runs after libcontainer's pivot_root).
static void mount_fs(const struct fsmount *m)
{
	char what[512], path[256];
	snprintf(what, sizeof what, "mount %s on %s", m->fstype, m->target);
	snprintf(path, sizeof path, "%s", m->target);
	struct stat st;
	if (strcmp(m->fstype, "sysfs") == 0 && lstat(m->target, &st) == 0 && !S_ISDIR(st.st_mode)) {
		// As libcontainer: not through a symbolic link or onto a file.
		errno = ENOTDIR;
		fail(what);
	}
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != 0)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			fail(what);
		*p = c;
		if (c == 0)
			break;
	}
	if (mount(m->source, m->target, m->fstype, m->flags, m->data) < 0)
		fail(what);
}

// holds_cgroup_tree reports whether a mount on target covers /sys/fs/cgroup (sysfs on /sys):
// it comes before the cgroup tree.
static int holds_cgroup_tree(const char *target)
{
	static const char tree[] = "/sys/fs/cgroup";
	size_t l = strlen(target);
	return l < sizeof tree - 1 && strncmp(tree, target, l) == 0 && (tree[l] == '/' || l == 1);
}

// mask_path hides path as libcontainer's maskPaths does: a directory under an empty
// read-only tmpfs, anything else under the VE's /dev/null; a missing path is left.
static void mask_path(const char *path)
{
	char what[256];
	snprintf(what, sizeof what, "mask %s", path);
	struct stat st, null;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return;
		fail(what);
	}
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=1") < 0 &&
		    mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=2") < 0)
			fail(what);
		return;
	}
	if (stat("/dev/null", &null) < 0 || !S_ISCHR(null.st_mode) || null.st_rdev != makedev(1, 3)) {
		errno = EINVAL;
		fail("check the VE's /dev/null before masking");
	}
	if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0)
		fail(what);
}

// mount_cgroups makes the VE's /sys/fs/cgroup as libcontainer does for a cgroup v1 host in a
// cgroup namespace: a tmpfs, then each hierarchy mounted there (from the VE's cgroup
// namespace, so its root is the VE's own cgroup), and for a hierarchy of several controllers
// ("cpu,cpuacct") a symbolic link to it for each of them.
static void mount_cgroups(const struct cgmount *cg, int n)
{
	const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	if (mount("tmpfs", "/sys/fs/cgroup", "tmpfs", flags, "mode=755") < 0)
		fail("mount a tmpfs on /sys/fs/cgroup");
	for (int i = 0; i < n; i++) {
		char path[256], what[512];
		snprintf(path, sizeof path, "/sys/fs/cgroup/%s", cg[i].name);
		snprintf(what, sizeof what, "mount the cgroup hierarchy %s on %s", cg[i].data, path);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			fail(what);
		if (mount(cg[i].source, path, "cgroup", flags | (cg[i].rw ? 0 : MS_RDONLY), cg[i].data) < 0)
			fail(what);
		if (!strchr(cg[i].name, ','))
			continue;
		char names[256];
		snprintf(names, sizeof names, "%s", cg[i].name);
		for (char *save = NULL, *c = strtok_r(names, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
			char link[256];
			snprintf(link, sizeof link, "/sys/fs/cgroup/%s", c);
			if (symlink(cg[i].name, link) < 0 && errno != EEXIST) {
				snprintf(what, sizeof what, "link %s to %s", link, cg[i].name);
				fail(what);
			}
		}
	}
}

// vectl_initwrap runs as a VE's PID 1 between libcontainer's set-up and the VE's own init:
// it loads the VE's precompiled seccomp program (which needs CAP_SYS_ADMIN, so libcontainer
// leaves that one capability to this process), drops to the VE's capabilities, closes its two
// descriptors and executes the init. Before that it mounts the VE's cgroup v1 tree, the file
// systems, masks and binds libcontainer left to it (all cost libcontainer far more: see
// wrapperBinds).
// argv: __initwrap MSG -- INIT ARGS... (proto.go).
void vectl_initwrap(int argc, char **argv, char **envp)
{
	if (argc < 5 || strcmp(argv[1], NSJ_INITWRAP_ARG) != 0 || strcmp(argv[3], "--") != 0)
		return;
	// While vectl's code runs with CAP_SYS_ADMIN, nothing may ptrace it or open its exe (the
	// final execve resets the flag).
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	static char msg[4096];
	long n = wire_unhex(argv[2], msg, sizeof msg);
	errno = EPROTO;
	if (n < 0)
		fail("the init wrapper's message is not hex");
	struct wire_attr a;
	size_t off = 0;
	int more, bpffd = -1, exefd = -1;
	uint32_t version = 0, bpfflags = 0;
	uint64_t caps[4] = {0};
	int have_caps = 0;
	const char *binds[2 * 16];
	int nbinds = 0;
	const char *detach[4];
	int ndetach = 0;
	struct cgmount cg[NSJ_MAX_CGROUPS];
	int ncg = 0;
	struct fsmount fs[NSJ_MAX_MOUNTS];
	int nfs = 0;
	const char *masks[NSJ_MAX_MASKS];
	int nmasks = 0;
	while ((more = wire_next(msg, (size_t)n, &off, &a)) > 0) {
		uint32_t u = a.len == 4 ? wire_u32(a.p) : 0;
		switch (a.type) {
		case NSJ_ATTR_VERSION:
			version = u;
			break;
		case NSJ_ATTR_BPFFD:
			bpffd = (int)u;
			break;
		case NSJ_ATTR_BPF:
			bpfflags = u;
			break;
		case NSJ_ATTR_EXEFD:
			exefd = (int)u;
			break;
		case NSJ_ATTR_CAPS:
			if (a.len == 32) {
				for (int i = 0; i < 4; i++)
					caps[i] = wire_u64(a.p + 8 * i);
				have_caps = 1;
			}
			break;
		case NSJ_ATTR_BIND: {
			// "SOURCE\0TARGET\0"
			const char *src = wire_str(&a);
			size_t l = src ? strlen(src) : 0;
			if (!src || l + 2 >= a.len || nbinds == 16)
				fail("the init wrapper's message has a malformed bind");
			binds[2 * nbinds] = src;
			binds[2 * nbinds + 1] = src + l + 1;
			nbinds++;
			break;
		}
		case NSJ_ATTR_DETACH:
			if (ndetach == 4 || !(detach[ndetach++] = wire_str(&a)))
				fail("the init wrapper's message has a malformed directory");
			break;
		case NSJ_ATTR_CGROUP_RO:
		case NSJ_ATTR_CGROUP_RW:
			if (ncg == NSJ_MAX_CGROUPS || cgroup_attr(&a, &cg[ncg]) < 0)
				fail("the init wrapper's message has a malformed cgroup hierarchy");
			cg[ncg++].rw = a.type == NSJ_ATTR_CGROUP_RW;
			break;
		case NSJ_ATTR_MOUNT:
			if (nfs == NSJ_MAX_MOUNTS || mount_attr(&a, &fs[nfs++]) < 0)
				fail("the init wrapper's message has a malformed mount");
			break;
		case NSJ_ATTR_MASK:
			if (nmasks == NSJ_MAX_MASKS || !(masks[nmasks] = wire_str(&a)) || masks[nmasks][0] != '/')
				fail("the init wrapper's message has a malformed mask");
			nmasks++;
			break;
		default:
			fail("the init wrapper's message has an unknown attribute");
		}
	}
	if (more < 0 || version != NSJ_PROTO_VERSION || bpffd < 0 || exefd < 0 || !have_caps)
		fail("the init wrapper's message is malformed");
	struct sock_fprog prog = read_program(bpffd);
	close(exefd);
	for (int i = 0; ncg > 0 && i < nfs; i++)
		if (holds_cgroup_tree(fs[i].target))
			mount_fs(&fs[i]);
	if (ncg > 0)
		mount_cgroups(cg, ncg);
	for (int i = 0; i < nfs; i++)
		if (ncg == 0 || !holds_cgroup_tree(fs[i].target))
			mount_fs(&fs[i]);
	for (int i = 0; i < nmasks; i++)
		mask_path(masks[i]);
	// Files libcontainer bound into the VE by their directories (detach), as the VE's /proc
	// views and device nodes: each goes over its target, then the directories go.
	for (int i = 0; i < nbinds; i++) {
		const char *src = binds[2 * i], *dst = binds[2 * i + 1];
		char what[256];
		snprintf(what, sizeof what, "bind %s over %s", src, dst);
		if (mount(src, dst, NULL, MS_BIND, NULL) == 0)
			continue;
		int fd; // a missing target (in /dev) is made, an empty file
		if (errno != ENOENT || (fd = open(dst, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
			fail(what);
		close(fd);
		if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
			fail(what);
	}
	for (int i = 0; i < ndetach; i++)
		if (umount2(detach[i], MNT_DETACH) < 0 || rmdir(detach[i]) < 0) {
			char what[256];
			snprintf(what, sizeof what, "remove %s", detach[i]);
			fail(what);
		}
	int last_cap = cap_last_cap();
	if (prog.filter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, bpfflags, &prog) < 0)
		fail("load the seccomp filter");
	set_caps(caps[0], caps[1], caps[2], caps[3], last_cap);
	execvpe(argv[4], &argv[4], envp);
	char what[256];
	snprintf(what, sizeof what, "exec %s", argv[4]);
	fail(what);
}
