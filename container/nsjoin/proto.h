// Generated from the Go constants by TestProtoHeader (go test -run TestProtoHeader -update): shared with the
// Go side. Do not edit by hand.
#ifndef VECTL_NSJOIN_PROTO_H
#define VECTL_NSJOIN_PROTO_H
#define NSJ_PROTO_VERSION 1
#define NSJ_SYNC_FD 3
#define NSJ_MAX_REQUEST 65536
#define NSJ_ATTR_VERSION 1
#define NSJ_ATTR_NSFLAGS 2
#define NSJ_ATTR_CAPS 3
#define NSJ_ATTR_BPF 4
#define NSJ_ATTR_SESSION 5
#define NSJ_ATTR_CWD 6
#define NSJ_ATTR_TTY 7
#define NSJ_ATTR_RLIMIT 8
#define NSJ_ATTR_ARG 9
#define NSJ_ATTR_BPFFD 10
#define NSJ_ATTR_EXEFD 11
#define NSJ_ATTR_BIND 12
#define NSJ_ATTR_DETACH 13
#define NSJ_ATTR_CGROUP_RO 14
#define NSJ_ATTR_CGROUP_RW 15
#define NSJ_ATTR_MOUNT 16
#define NSJ_ATTR_MAX 18
#define NSJ_MAX_CGROUPS 32
#define NSJ_MAX_MOUNTS 16
#define NSJ_ATTR_MASK 17
#define NSJ_MAX_MASKS 16
#define NSJ_ARG "__nsjoin"
#define NSJ_INITWRAP_ARG "__initwrap"
#endif
