//! `gofer run timeline`: a text Gantt chart of a run's timeline (from `GET …/runs/{run}/timeline`).

use gofer_core::timeline::RunTimeline;

use crate::output::{duration, opt, table};

/// One bar per task on a shared time axis: `.` waiting in the queue once ready, `#` running
/// (`=` on the critical path); critical tasks are starred.
pub(crate) fn chart(t: &RunTimeline, width: usize) -> String {
    let width = width.max(10);
    let total = t.total_s.max(0.001);
    let column = |s: f64| ((s / total) * width as f64).floor().clamp(0.0, width as f64) as usize;
    let offset = |time: Option<time::OffsetDateTime>| time.map(|x| (x - t.created).as_seconds_f64().max(0.0));
    let mut out = format!(
        "Run {} ({}), {} total; one column = {}; '.' queued, '#' running, '=' running on the critical path\n",
        t.run_id,
        t.status,
        duration(t.total_s),
        duration(total / width as f64),
    );
    let rows = t.tasks.iter().map(|task| {
        let mut bar = vec![' '; width];
        let ready = offset(task.ready);
        let started = offset(task.started);
        let ended = offset(task.ended).unwrap_or(t.total_s);
        if let Some(r) = ready {
            let until = started.unwrap_or(ended);
            bar.iter_mut().take(column(until)).skip(column(r)).for_each(|c| *c = '.');
        }
        if let Some(s) = started {
            let mark = if task.critical { '=' } else { '#' };
            // A task that ran at all gets at least one column.
            let end = column(ended).max(column(s) + 1).min(width);
            bar.iter_mut().take(end).skip(column(s).min(width - 1)).for_each(|c| *c = mark);
        }
        [
            format!("{}{}", if task.critical { "* " } else { "  " }, task.task_id),
            task.status.to_string(),
            opt(task.queue_wait_s.map(duration)),
            opt(task.run_s.map(duration)),
            task.attempts.to_string(),
            format!("|{}|", bar.into_iter().collect::<String>()),
        ]
    });
    out.push_str(&table(["task", "status", "queued", "ran", "attempts", "timeline"], rows));
    let path: Vec<&str> = t.critical_path.iter().map(|id| id.as_str()).collect();
    out.push_str(&format!("critical path: {}\n", if path.is_empty() { "-".into() } else { path.join(" -> ") }));
    out
}
