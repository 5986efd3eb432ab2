package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat CPU times on Linux.
const clockTicks = 100

// procCPU returns the user+system CPU time of pid.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is state (field 3); utime is field 14, stime 15.
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// selfCPU returns the user+system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procRSS returns the resident set size of pid in bytes.
func procRSS(pid int) uint64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// child is a running child process of this binary.
type child struct {
	role  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout lines after READY
	info  readyInfo
	done  chan struct{} // closed when the process exited
}

// startChild starts "self child ROLE args..." and waits for its READY line.
func startChild(ctx context.Context, role string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"child", role}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{role: role, cmd: cmd, stdin: stdin, lines: make(chan string, 1<<16), done: make(chan struct{})}
	readyc := make(chan readyInfo, 1)
	go func() {
		sc := lineReader(stdout)
		gotReady := false
		for sc.Scan() {
			line := sc.Text()
			if !gotReady {
				if v, ok := strings.CutPrefix(line, "READY "); ok {
					var ri readyInfo
					json.Unmarshal([]byte(v), &ri)
					readyc <- ri
					gotReady = true
					continue
				}
			}
			select {
			case c.lines <- line:
			default: // nobody listens; drop
			}
		}
		cmd.Wait()
		close(c.done)
	}()
	select {
	case c.info = <-readyc:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("child %s exited before it was ready: %v", role, cmd.ProcessState)
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		c.kill()
		return nil, fmt.Errorf("child %s not ready within 60 s", role)
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop asks the child to exit (closing stdin, SIGTERM) and kills it after
// a grace period.
func (c *child) stop() {
	if c == nil {
		return
	}
	c.stdin.Close()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}

// kill ends the child at once (SIGKILL), like a crashed hub.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// waitLine returns the next stdout line with prefix, or an error.
func (c *child) waitLine(ctx context.Context, prefix string, d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case l := <-c.lines:
			if v, ok := strings.CutPrefix(l, prefix); ok {
				return v, nil
			}
		case <-c.done:
			return "", fmt.Errorf("child %s exited", c.role)
		case <-t.C:
			return "", fmt.Errorf("child %s: no %q line within %v", c.role, prefix, d)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

var errNoStats = errors.New("no stats endpoint")

// stopAll stops children in parallel.
func stopAll(cs ...*child) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop() }()
		}
	}
	wg.Wait()
}

func lineReader(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return sc
}
