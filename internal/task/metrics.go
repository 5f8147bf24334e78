package task

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/store"
)

// metrics are the runner's Prometheus metrics.
type metrics struct {
	started  *prometheus.CounterVec
	finished *prometheus.CounterVec
	running  prometheus.Gauge
	queued   prometheus.Gauge
	duration *prometheus.HistogramVec
	lines    prometheus.Counter
	cost     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_tasks_started_total", Help: "Tasks started, by type."}, []string{"type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_tasks_finished_total", Help: "Tasks finished, by type and final status."},
			[]string{"type", "status"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_tasks_running", Help: "Runner slots in use on this instance."}),
		queued:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_tasks_queued", Help: "Tasks waiting for a runner slot."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "berth_task_duration_seconds", Help: "Time from a task's start to its end, by type.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 16)}, []string{"type"}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_task_log_lines_total", Help: "Task log lines written."}),
		cost:  prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_cost_usd_total", Help: "Agent cost reported by claude runs, in US dollars."}),
	}
	reg.MustRegister(m.started, m.finished, m.running, m.queued, m.duration, m.lines, m.cost)
	// Every type and final status from the start, at zero.
	for _, typ := range []store.TaskType{store.TaskClaudeChat, store.TaskGitOperation, store.TaskDockerBuild} {
		m.started.WithLabelValues(string(typ))
		m.duration.WithLabelValues(string(typ))
		for _, st := range []store.TaskStatus{store.TaskSucceeded, store.TaskFailed, store.TaskCancelled, store.TaskTimedOut} {
			m.finished.WithLabelValues(string(typ), string(st))
		}
	}
	return m
}
