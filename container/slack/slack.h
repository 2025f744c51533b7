// sysmon's timer slack (see slack.go).

// The timer slack of the Go runtime's sysmon thread, in nanoseconds.
#define SYSMON_SLACK_NS 1000000L
