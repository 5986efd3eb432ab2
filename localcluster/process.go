package localcluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// process is one component of a local cluster: a child process whose
// output goes to a log file and that dies with its parent.
type process struct {
	name    string
	path    string
	args    []string
	logPath string
	logger  *slog.Logger

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.name)
		}
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s log: %w", p.name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// The kernel kills the component when the process that started
		// it dies, however it dies: a failed or interrupted test never
		// leaves etcd or kube-apiserver behind.
		Pdeathsig: syscall.SIGKILL,
		Setpgid:   true,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.logger.Debug("started", "component", p.name, "pid", cmd.Process.Pid)
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	return nil
}

// exited reports whether the process has stopped, and its log tail.
func (p *process) exited() (bool, string) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true, p.logTail()
	default:
		return false, ""
	}
}

func (p *process) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	return tail(string(data), 20)
}

// stop sends SIGTERM to the process group, waits up to grace, then kills.
func (p *process) stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, cmd.Process.Pid)
		}
	}
	p.logger.Debug("stopped", "component", p.name)
	return nil
}

// processError wraps a startup failure with the component's log tail.
func processError(p *process, err error) error {
	if t := p.logTail(); t != "" {
		return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, filepath.Base(p.logPath), t)
	}
	return err
}

var errExited = errors.New("exited during start-up")
