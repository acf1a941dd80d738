package broker

import (
	"sync"
	"sync/atomic"
)

// workers runs a connection's short-lived work — its CONNECT, each run of
// its writer — on goroutines kept parked between tasks, up to maxIdle of
// them, rather than on a new goroutine each time.
//
// Why: goroutines start with the runtime's average stack size, which idle
// connections (one small goroutine each) make 2 KiB. CONNECT with
// authentication needs 8-16 KiB and a writer run about 4 KiB, so a new
// goroutine would grow its stack by copying, two or three times per
// connect (a tenth of the CPU of a connection storm, measured) and once per
// writer run. A parked worker keeps its grown stack. A task goes to a
// parked worker when one is waiting, else to a new goroutine, which parks
// afterwards if fewer than maxIdle are parked: there is never a queue, and
// a task never waits for another. Parked workers cost their stacks (at most
// maxIdle × 16 KiB or so), not one per connection.
type workers struct {
	tasks   chan task // unbuffered: a send succeeds only to a parked worker
	parked  atomic.Int32
	maxIdle int32
	quit    chan struct{}
	wg      sync.WaitGroup
}

// task is a method of a client to run.
type task struct {
	fn func(*client)
	c  *client
}

func newWorkers(maxIdle int) *workers {
	return &workers{tasks: make(chan task), maxIdle: int32(maxIdle), quit: make(chan struct{})}
}

// run runs fn(c) on a parked worker or a new goroutine.
func (w *workers) run(fn func(*client), c *client) {
	t := task{fn, c}
	if w.parked.Load() > 0 {
		select {
		case w.tasks <- t:
			return
		default:
		}
	}
	w.wg.Add(1)
	go w.work(t)
}

// work runs t, then tasks handed to it while it is parked.
func (w *workers) work(t task) {
	defer w.wg.Done()
	for {
		t.fn(t.c)
		t = task{}
		if w.parked.Add(1) > w.maxIdle {
			w.parked.Add(-1)
			return
		}
		select {
		case t = <-w.tasks:
			w.parked.Add(-1)
		case <-w.quit:
			w.parked.Add(-1)
			return
		}
	}
}

// close makes parked workers exit and waits for every worker; tasks that
// are still running must end by themselves.
func (w *workers) close() {
	close(w.quit)
	w.wg.Wait()
}
