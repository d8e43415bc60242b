package faults

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one child process (a worker or a nats-server) that can be
// started again with the same arguments after it was killed. Each runs in
// its own process group, gets SIGKILL if the test binary dies (Pdeathsig),
// and is killed by PID when the test ends, whatever happened. Its output is
// appended to a log file.
type proc struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	logPath string
	// env is added to the test's environment (less CONTACTSTOP_*) for
	// every start; set it before the first.
	env []string

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{} // closed when the current process has exited
	intended   bool          // the current process is being stopped by the test
	paused     bool
	starts     int
	unexpected []string // exits the test did not cause
}

func newProc(t testing.TB, logDir, name, bin string, args ...string) *proc {
	p := &proc{t: t, name: name, bin: bin, args: args, logPath: logDir + "/" + name + ".log"}
	t.Cleanup(p.cleanup)
	return p
}

// start starts the process; it must not be running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.name)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "==== faults: start #%d at %s: %s %s\n", p.starts, time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "CONTACTSTOP_") }), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.intended, p.paused = cmd, done, false, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "==== faults: pid %d exited at %s: %v\n", cmd.Process.Pid, time.Now().Format(time.RFC3339Nano), err)
		_ = f.Close()
		p.mu.Lock()
		if !p.intended {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s (pid %d) exited on its own: %v (log %s)", p.name, cmd.Process.Pid, err, p.logPath))
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *proc) mustStart() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

// pid returns the PID of the running process, or 0.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *proc) runningLocked() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the running process (by PID) and, with intended,
// marks the exit it may cause as the test's doing. It returns the PID, or
// an error if the process was not running.
func (p *proc) signal(sig syscall.Signal, intended bool) (int, chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return 0, nil, fmt.Errorf("%s is not running", p.name)
	}
	if intended {
		p.intended = true
	}
	pid := p.cmd.Process.Pid
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return pid, p.done, fmt.Errorf("signal %s pid %d: %w", p.name, pid, err)
	}
	return pid, p.done, nil
}

// kill sends SIGKILL to the process (and its group) and waits for it to
// exit. It returns the PID killed.
func (p *proc) kill() (int, error) {
	pid, done, err := p.signal(syscall.SIGKILL, true)
	if err != nil {
		return 0, err
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-done:
		return pid, nil
	case <-time.After(30 * time.Second):
		return pid, fmt.Errorf("%s (pid %d) did not exit within 30s of SIGKILL", p.name, pid)
	}
}

// terminate sends SIGTERM and waits up to grace for the exit, then kills.
func (p *proc) terminate(grace time.Duration) error {
	pid, done, err := p.signal(syscall.SIGTERM, true)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_, err = p.kill()
	return errors.Join(fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM", p.name, pid, grace), err)
}

// pause stops the process with SIGSTOP; resume continues it.
func (p *proc) pause() (int, error) {
	pid, _, err := p.signal(syscall.SIGSTOP, false)
	return pid, err
}

func (p *proc) resume() (int, error) {
	pid, _, err := p.signal(syscall.SIGCONT, false)
	return pid, err
}

// unexpectedExits lists the exits the test did not cause.
func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.unexpected)
}

// cleanup kills the process by PID (continuing it first if paused) and
// waits for it: registered with t.Cleanup when the proc is made.
func (p *proc) cleanup() {
	p.mu.Lock()
	if !p.runningLocked() {
		p.mu.Unlock()
		return
	}
	p.intended = true
	pid, done := p.cmd.Process.Pid, p.done
	p.mu.Unlock()
	_ = syscall.Kill(pid, syscall.SIGCONT)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s (pid %d) still running 30s after SIGKILL", p.name, pid)
	}
}

// cpuSeconds reads a process's CPU time (user + system) from /proc.
func cpuSeconds(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (in parentheses): utime and stime
	// are the 12th and 13th.
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	var ut, st float64
	_, _ = fmt.Sscan(f[11], &ut)
	_, _ = fmt.Sscan(f[12], &st)
	return (ut + st) / 100, nil // USER_HZ
}
