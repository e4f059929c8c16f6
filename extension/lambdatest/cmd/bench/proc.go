package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU is utime+stime of /proc/PID/stat: every thread's CPU, exited
// threads included, in clock ticks.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu of %d: %w", pid, err)
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu of %d: malformed stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is the state (field 3); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu of %d: malformed stat", pid)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu of %d: malformed stat", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// schedCPU sums sum_exec_runtime of /proc/PID/task/*/schedstat: the CPU of
// the live threads in nanoseconds, for spans too short for clock ticks
// (init takes a few of them).
func schedCPU(pid int) (time.Duration, error) {
	dirs, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(dirs) == 0 {
		return 0, fmt.Errorf("read schedstat of %d: no threads", pid)
	}
	var sum int64
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // the thread exited
		}
		f := bytes.Fields(b)
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read schedstat of %d: %w", pid, err)
		}
		sum += ns
	}
	return time.Duration(sum), nil
}

// memKB reads VmRSS and VmHWM (peak RSS) of /proc/PID/status, in KiB.
func memKB(pid int) (rss, hwm int64, err error) {
	m, err := status(pid)
	return m["VmRSS"], m["VmHWM"], err
}

// status reads the kB figures of /proc/PID/status.
func status(pid int) (map[string]int64, error) {
	m := map[string]int64{}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	for line := range bytes.Lines(b) {
		k, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil {
			m[string(k)] = v
		}
	}
	return m, nil
}

// cpuModel names the processor for the table's header.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range bytes.Lines(b) {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return "unknown CPU"
}
