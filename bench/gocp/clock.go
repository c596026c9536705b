package main

import "golang.org/x/sys/unix"

// monotonic is CLOCK_MONOTONIC in seconds, the clock of Python's time.monotonic, so the
// harness's times compare with the clients' and the orchestrator's.
func monotonic() float64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}
