package idle

import (
	"fmt"

	"github.com/vectl/vectl/container/wire"
)

// The idle loop's two messages, encoded by package wire and carried as hex on a command line
// (each process replaces the other with execve, so there is no socket to send them on):
//
//   - Handover, from the Go monitor to the idle loop: "vectl __monitor-idle HEX [-- ...]";
//     what follows HEX is for ps only (the monitor puts its resume command line there).
//   - Resume, from the idle loop back to the Go monitor once the VE's init has exited:
//     Handover.ResumeArgv followed by ResumeFlag, HEX and the VE's id.
//
// The descriptor numbers inside them are data of the message, set by the side that owns the
// descriptors. proto.h holds the C side's copy of these constants, generated from them
// (TestProtoHeader keeps the two equal).
const (
	// ProtoVersion changes whenever an attribute changes meaning.
	ProtoVersion = 1
	// MaxClients bounds the console clients handed over (the loop's fixed table).
	MaxClients = 16
	// ResumeFlag is the monitor's flag that takes the Resume message.
	ResumeFlag = "--resume"
	// CloserArg is the argv[1] that makes the binary (vectl's or vectl-idle) the views'
	// closer: "vectl-views-closer __views-closer SYNCFD FANFD [VIEWFD...]" (views.c).
	CloserArg = "__views-closer"
	// LayoutArg is the argv[1] that makes the binary the layout helper: "vectl-layout
	// __layout FILE..." (layout.c, LayOut).
	LayoutArg = "__layout"
)

// Attribute types of both messages.
const (
	AttrVersion    = 1  // u32: ProtoVersion
	AttrVEID       = 2  // string: the VE's id
	AttrRunID      = 3  // string: the run the monitor started with
	AttrInitPID    = 4  // u32: the VE's init (Handover)
	AttrPtyFD      = 5  // u32: the console pty master (Handover)
	AttrListenFD   = 6  // u32: the console socket's listener
	AttrLogFD      = 7  // u32: the console log, open for appending (Handover)
	AttrLogPath    = 8  // string: the console log's path, for rotation (Handover)
	AttrLogMax     = 9  // u64: rotate the log at this size (Handover)
	AttrClientFD   = 10 // u32: a connected vectl console client (repeated)
	AttrResumeArg  = 11 // string: the monitor's command line before ResumeFlag (Handover, repeated)
	AttrInitStatus = 12 // u32: the init's wait status (Resume)
	AttrLoadTasks  = 13 // string: the VE's cgroup directory, sampled for its load average (Handover)
	AttrLoadOut    = 14 // string: the file the load average is written to (Handover)
	AttrViews      = 15 // string: the VE's /proc and /sys views, as Relay.Views (Handover)
	AttrStopMark   = 16 // string: Handover.StopMark (Handover)
	AttrExeFD      = 17 // u32: Handover.ExeFD (Handover)
	AttrStopArg    = 18 // string: Handover.StopArgv (Handover, repeated)
	AttrStopSignal = 19 // u32: Handover.StopSignals (Handover, repeated)
	AttrForwardSig = 20 // u32: Handover.ForwardSignals (Handover, repeated)
	attrMaxValue   = 21
)

// Handover is what the idle loop needs to relay the console and watch the init.
type Handover struct {
	VEID, RunID string
	InitPID     int
	PtyFD       int
	ListenFD    int
	LogFD       int
	LogPath     string
	LogMax      int64
	ClientFDs   []int
	// ResumeArgv runs the Go monitor again: this binary, its global options and the
	// monitor command; the loop appends ResumeFlag, the Resume message and VEID.
	ResumeArgv []string
	// Load, when set, has the loop keep the VE's load average (see Load).
	Load Load
	// Views, when set, has the loop keep the VE's /proc and /sys views (see Relay.Views).
	Views string
	// StopMark, when set, is the file a stop writes ("PID STARTTIME") before it kills the
	// init. When the init has exited and the file names a live process, that stop tears the
	// VE down: the loop exits instead of running the Go monitor again only to be killed by
	// it (a Go start of 10 to 15 ms on the stop's critical path).
	StopMark string
	// ExeFD, when above 2, is a descriptor (O_PATH) of vectl's binary: a loop running as the
	// program of its own (Helper) resumes the Go monitor through it. Otherwise the loop runs
	// in vectl's binary and resumes through /proc/self/exe.
	ExeFD int
	// StopArgv, when set, makes the loop a foreground vectl's (start --foreground, a systemd
	// unit's main process), which stays the VE's monitor in the loop: the signals of
	// StopSignals, which the process has blocked, run StopArgv (vectl stop ID, through
	// ExeFD as the resume does) once, the graceful stop the Go monitor would have made; those
	// of ForwardSignals go to the init. The loop reads them from a signalfd, so that a signal
	// that arrived during the hand-over, pending, is not lost; it resumes the Go monitor
	// with them unblocked. StopMark is then not used: the Go monitor always resumes, since
	// its exit status is the unit's and it may have a restart request to answer.
	StopArgv       []string
	StopSignals    []int
	ForwardSignals []int
}

// Load is where the relay samples a VE's load and writes its load average: every 5 s it
// counts the threads of the cgroup directory Tasks and its descendants (cgroup.threads on
// v2, tasks on v1) that are running, runnable or in uninterruptible sleep, folds the count into 1, 5 and 15 minute averages as the kernel
// does for the host, and writes "L1 L5 L15 RUNNING/THREADS\n" to Out (the format of
// /proc/loadavg's first four fields), replacing it. Empty: no sampling.
type Load struct {
	Tasks, Out string
}

// Resume is what the idle loop hands back to the Go monitor.
type Resume struct {
	VEID, RunID string
	ListenFD    int
	InitStatus  uint32
	ClientFDs   []int
}

// Hex encodes the hand-over.
func (h *Handover) Hex() (string, error) {
	if len(h.ClientFDs) > MaxClients {
		return "", fmt.Errorf("hand-over: %d console clients, at most %d", len(h.ClientFDs), MaxClients)
	}
	var e wire.Encoder
	e.U32(AttrVersion, ProtoVersion)
	e.String(AttrVEID, h.VEID)
	e.String(AttrRunID, h.RunID)
	e.U32(AttrInitPID, uint32(h.InitPID))
	e.U32(AttrPtyFD, uint32(h.PtyFD))
	e.U32(AttrListenFD, uint32(h.ListenFD))
	e.U32(AttrLogFD, uint32(h.LogFD))
	e.String(AttrLogPath, h.LogPath)
	e.U64(AttrLogMax, uint64(h.LogMax))
	for _, fd := range h.ClientFDs {
		e.U32(AttrClientFD, uint32(fd))
	}
	for _, a := range h.ResumeArgv {
		e.String(AttrResumeArg, a)
	}
	if h.Load.Tasks != "" && h.Load.Out != "" {
		e.String(AttrLoadTasks, h.Load.Tasks)
		e.String(AttrLoadOut, h.Load.Out)
	}
	if h.Views != "" {
		e.String(AttrViews, h.Views)
	}
	if h.StopMark != "" {
		e.String(AttrStopMark, h.StopMark)
	}
	if h.ExeFD > 2 {
		e.U32(AttrExeFD, uint32(h.ExeFD))
	}
	for _, a := range h.StopArgv {
		e.String(AttrStopArg, a)
	}
	for _, s := range h.StopSignals {
		e.U32(AttrStopSignal, uint32(s))
	}
	for _, s := range h.ForwardSignals {
		e.U32(AttrForwardSig, uint32(s))
	}
	return e.Hex(), nil
}

// Hex encodes the resume message (the C side writes it; Go does for tests).
func (r *Resume) Hex() string {
	var e wire.Encoder
	e.U32(AttrVersion, ProtoVersion)
	e.String(AttrVEID, r.VEID)
	e.String(AttrRunID, r.RunID)
	e.U32(AttrListenFD, uint32(r.ListenFD))
	e.U32(AttrInitStatus, r.InitStatus)
	for _, fd := range r.ClientFDs {
		e.U32(AttrClientFD, uint32(fd))
	}
	return e.Hex()
}

// decoded holds the attributes common to both messages while they are read.
type decoded struct {
	h       Handover
	status  uint32
	version uint32
	seen    map[uint16]bool
}

func decode(msg string) (*decoded, error) {
	attrs, err := wire.DecodeHex(msg)
	if err != nil {
		return nil, err
	}
	d := &decoded{seen: map[uint16]bool{}}
	for _, a := range attrs {
		d.seen[a.Type] = true
		var u uint32
		var u64 uint64
		var err error
		switch a.Type {
		case AttrVersion:
			d.version, err = a.U32()
		case AttrVEID:
			d.h.VEID, err = a.String()
		case AttrRunID:
			d.h.RunID, err = a.String()
		case AttrInitPID, AttrPtyFD, AttrListenFD, AttrLogFD, AttrClientFD, AttrInitStatus, AttrExeFD,
			AttrStopSignal, AttrForwardSig:
			if u, err = a.U32(); err == nil {
				switch a.Type {
				case AttrInitPID:
					d.h.InitPID = int(u)
				case AttrPtyFD:
					d.h.PtyFD = int(u)
				case AttrListenFD:
					d.h.ListenFD = int(u)
				case AttrLogFD:
					d.h.LogFD = int(u)
				case AttrClientFD:
					d.h.ClientFDs = append(d.h.ClientFDs, int(u))
				case AttrInitStatus:
					d.status = u
				case AttrExeFD:
					d.h.ExeFD = int(u)
				case AttrStopSignal:
					d.h.StopSignals = append(d.h.StopSignals, int(u))
				case AttrForwardSig:
					d.h.ForwardSignals = append(d.h.ForwardSignals, int(u))
				}
			}
		case AttrLogPath:
			d.h.LogPath, err = a.String()
		case AttrLogMax:
			u64, err = a.U64()
			d.h.LogMax = int64(u64)
		case AttrResumeArg:
			var s string
			s, err = a.String()
			d.h.ResumeArgv = append(d.h.ResumeArgv, s)
		case AttrLoadTasks:
			d.h.Load.Tasks, err = a.String()
		case AttrLoadOut:
			d.h.Load.Out, err = a.String()
		case AttrViews:
			d.h.Views, err = a.String()
		case AttrStopMark:
			d.h.StopMark, err = a.String()
		case AttrStopArg:
			var s string
			s, err = a.String()
			d.h.StopArgv = append(d.h.StopArgv, s)
		default:
			err = fmt.Errorf("attribute %d is unknown", a.Type)
		}
		if err != nil {
			return nil, err
		}
	}
	if d.version != ProtoVersion {
		return nil, fmt.Errorf("version %d, want %d", d.version, ProtoVersion)
	}
	if d.h.VEID == "" {
		return nil, fmt.Errorf("no VE id")
	}
	return d, nil
}

// ParseHandover decodes a hand-over (the C side reads it; Go does for tests).
func ParseHandover(msg string) (*Handover, error) {
	d, err := decode(msg)
	if err != nil {
		return nil, fmt.Errorf("idle hand-over: %w", err)
	}
	for _, a := range []uint16{AttrInitPID, AttrPtyFD, AttrListenFD, AttrLogFD, AttrLogPath, AttrResumeArg} {
		if !d.seen[a] {
			return nil, fmt.Errorf("idle hand-over: attribute %d missing", a)
		}
	}
	return &d.h, nil
}

// ParseResume decodes the resume message the idle loop hands back.
func ParseResume(msg string) (*Resume, error) {
	d, err := decode(msg)
	if err != nil {
		return nil, fmt.Errorf("monitor resume: %w", err)
	}
	if !d.seen[AttrInitStatus] || !d.seen[AttrListenFD] {
		return nil, fmt.Errorf("monitor resume: the init's status or the console listener is missing")
	}
	return &Resume{VEID: d.h.VEID, RunID: d.h.RunID, ListenFD: d.h.ListenFD, InitStatus: d.status,
		ClientFDs: d.h.ClientFDs}, nil
}

// header renders proto.h, the C side's copy of the constants above.
func header() string {
	return wire.Header("VECTL_IDLE_PROTO_H", "TestProtoHeader", []wire.Const{
		{Name: "IDLE_PROTO_VERSION", Value: ProtoVersion}, {Name: "IDLE_MAX_CLIENTS", Value: MaxClients},
		{Name: "IDLE_ATTR_VERSION", Value: AttrVersion}, {Name: "IDLE_ATTR_VEID", Value: AttrVEID},
		{Name: "IDLE_ATTR_RUNID", Value: AttrRunID}, {Name: "IDLE_ATTR_INITPID", Value: AttrInitPID},
		{Name: "IDLE_ATTR_PTYFD", Value: AttrPtyFD}, {Name: "IDLE_ATTR_LISTENFD", Value: AttrListenFD},
		{Name: "IDLE_ATTR_LOGFD", Value: AttrLogFD}, {Name: "IDLE_ATTR_LOGPATH", Value: AttrLogPath},
		{Name: "IDLE_ATTR_LOGMAX", Value: AttrLogMax}, {Name: "IDLE_ATTR_CLIENTFD", Value: AttrClientFD},
		{Name: "IDLE_ATTR_RESUMEARG", Value: AttrResumeArg}, {Name: "IDLE_ATTR_INITSTATUS", Value: AttrInitStatus},
		{Name: "IDLE_ATTR_LOADTASKS", Value: AttrLoadTasks}, {Name: "IDLE_ATTR_LOADOUT", Value: AttrLoadOut},
		{Name: "IDLE_ATTR_VIEWS", Value: AttrViews}, {Name: "IDLE_ATTR_STOPMARK", Value: AttrStopMark},
		{Name: "IDLE_ATTR_EXEFD", Value: AttrExeFD}, {Name: "IDLE_ATTR_STOPARG", Value: AttrStopArg},
		{Name: "IDLE_ATTR_STOPSIGNAL", Value: AttrStopSignal}, {Name: "IDLE_ATTR_FORWARDSIG", Value: AttrForwardSig},
		{Name: "IDLE_ATTR_MAX", Value: attrMaxValue},
	}, map[string]string{"IDLE_ARG": Arg, "IDLE_RESUME_FLAG": ResumeFlag, "IDLE_CLOSER_ARG": CloserArg,
		"IDLE_LAYOUT_ARG": LayoutArg})
}
