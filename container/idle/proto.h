// Generated from the Go constants by TestProtoHeader (go test -run TestProtoHeader -update): shared with the
// Go side. Do not edit by hand.
#ifndef VECTL_IDLE_PROTO_H
#define VECTL_IDLE_PROTO_H
#define IDLE_PROTO_VERSION 1
#define IDLE_MAX_CLIENTS 16
#define IDLE_ATTR_VERSION 1
#define IDLE_ATTR_VEID 2
#define IDLE_ATTR_RUNID 3
#define IDLE_ATTR_INITPID 4
#define IDLE_ATTR_PTYFD 5
#define IDLE_ATTR_LISTENFD 6
#define IDLE_ATTR_LOGFD 7
#define IDLE_ATTR_LOGPATH 8
#define IDLE_ATTR_LOGMAX 9
#define IDLE_ATTR_CLIENTFD 10
#define IDLE_ATTR_RESUMEARG 11
#define IDLE_ATTR_INITSTATUS 12
#define IDLE_ATTR_LOADTASKS 13
#define IDLE_ATTR_LOADOUT 14
#define IDLE_ATTR_VIEWS 15
#define IDLE_ATTR_STOPMARK 16
#define IDLE_ATTR_EXEFD 17
#define IDLE_ATTR_STOPARG 18
#define IDLE_ATTR_STOPSIGNAL 19
#define IDLE_ATTR_FORWARDSIG 20
#define IDLE_ATTR_MAX 21
#define IDLE_ARG "__monitor-idle"
#define IDLE_CLOSER_ARG "__views-closer"
#define IDLE_LAYOUT_ARG "__layout"
#define IDLE_RESUME_FLAG "--resume"
#endif
