//! Runs, task executions, attempts, logs and events.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use gofer_core::debug::RunDebug;
use gofer_core::id::EventId;
use gofer_core::model::{Event, Page, Run, TaskAttempt, TaskExecution};
use gofer_core::timeline::RunTimeline;
use gofer_core::{NamespaceId, PipelineId, RunId, TaskId};

use crate::routes::*;
use crate::stream::{EventStream, LogStream};
use crate::{Client, Error, PageOptions, all_pages, page_query};

/// Which of the tenant's events to read; a narrower scope needs its parents (the server answers
/// `invalid_filter` otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events inside this namespace.
    pub namespace: Option<NamespaceId>,
    /// Only events of this pipeline.
    pub pipeline: Option<PipelineId>,
    /// Only events of this run.
    pub run: Option<RunId>,
}

impl EventFilter {
    /// The events of one run.
    pub fn run(namespace: &NamespaceId, pipeline: &PipelineId, run: RunId) -> Self {
        Self { namespace: Some(namespace.clone()), pipeline: Some(pipeline.clone()), run: Some(run) }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        query.extend(self.namespace.as_ref().map(|n| ("namespace", n.to_string())));
        query.extend(self.pipeline.as_ref().map(|p| ("pipeline", p.to_string())));
        query.extend(self.run.map(|r| ("run", r.to_string())));
        query
    }
}

#[derive(serde::Deserialize)]
struct Cancelled {
    cancelled: Vec<RunId>,
}

impl Client {
    /// `POST …/runs`.
    pub async fn start_run(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        variables: &BTreeMap<String, String>,
    ) -> Result<Run, Error> {
        let body = serde_json::json!({ "variables": variables });
        self.one(self.request(START_RUN, &[ns, p]).json(&body), "run").await
    }

    /// `GET …/runs`, one page (newest first).
    pub async fn list_runs(&self, ns: &NamespaceId, p: &PipelineId, page: PageOptions) -> Result<Page<Run>, Error> {
        self.send(self.request(LIST_RUNS, &[ns, p]).query(&page_query(&page))).await
    }

    /// `GET …/runs/{run}`.
    pub async fn get_run(&self, ns: &NamespaceId, p: &PipelineId, run: RunId) -> Result<Run, Error> {
        self.one(self.request(GET_RUN, &[ns, p, &run]), "run").await
    }

    /// `POST …/runs/{run}/cancel`.
    pub async fn cancel_run(&self, ns: &NamespaceId, p: &PipelineId, run: RunId) -> Result<Run, Error> {
        self.one(self.request(CANCEL_RUN, &[ns, p, &run]), "run").await
    }

    /// `POST …/runs/cancel-all`: the runs that were unfinished and are now being cancelled.
    pub async fn cancel_all_runs(&self, ns: &NamespaceId, p: &PipelineId) -> Result<Vec<RunId>, Error> {
        let answer: Cancelled = self.send(self.request(CANCEL_ALL_RUNS, &[ns, p])).await?;
        Ok(answer.cancelled)
    }

    /// `GET …/runs/{run}/timeline`: queue wait and run time per task, and the critical path.
    pub async fn run_timeline(&self, ns: &NamespaceId, p: &PipelineId, run: RunId) -> Result<RunTimeline, Error> {
        self.send(self.request(RUN_TIMELINE, &[ns, p, &run])).await
    }

    /// `GET …/runs/{run}/debug`: the run, its config version, every task execution with every
    /// attempt, its events and the tenant's quota state.
    pub async fn run_debug(&self, ns: &NamespaceId, p: &PipelineId, run: RunId) -> Result<RunDebug, Error> {
        self.send(self.request(RUN_DEBUG, &[ns, p, &run])).await
    }

    /// `GET …/runs/{run}/tasks`, one page.
    pub async fn list_tasks_page(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        page: PageOptions,
    ) -> Result<Page<TaskExecution>, Error> {
        self.send(self.request(LIST_TASKS, &[ns, p, &run]).query(&page_query(&page))).await
    }

    /// `GET …/runs/{run}/tasks`, every page.
    pub async fn list_tasks(&self, ns: &NamespaceId, p: &PipelineId, run: RunId) -> Result<Vec<TaskExecution>, Error> {
        all_pages(|page| self.list_tasks_page(ns, p, run, page)).await
    }

    /// `GET …/runs/{run}/tasks/{task}`.
    pub async fn get_task(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        task: &TaskId,
    ) -> Result<TaskExecution, Error> {
        self.one(self.request(GET_TASK, &[ns, p, &run, task]), "task").await
    }

    /// `GET …/tasks/{task}/attempts`: every attempt, oldest first.
    pub async fn list_attempts(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        task: &TaskId,
    ) -> Result<Vec<TaskAttempt>, Error> {
        let page: Page<TaskAttempt> = self.send(self.request(LIST_ATTEMPTS, &[ns, p, &run, task])).await?;
        Ok(page.items)
    }

    /// `GET …/tasks/{task}/logs` as text (the current attempt's log).
    pub async fn task_logs(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        task: &TaskId,
    ) -> Result<String, Error> {
        Ok(self.raw(self.request(TASK_LOGS, &[ns, p, &run, task])).await?.text().await?)
    }

    /// `GET …/tasks/{task}/logs?attempt=N` as text.
    pub async fn attempt_logs(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        task: &TaskId,
        attempt: u32,
    ) -> Result<String, Error> {
        let request = self.request(TASK_LOGS, &[ns, p, &run, task]).query(&[("attempt", attempt)]);
        Ok(self.raw(request).await?.text().await?)
    }

    /// `GET …/tasks/{task}/logs?follow=true`: the log from byte `offset` as the task writes it, in
    /// chunks; the stream ends once the task execution is complete and all was sent.
    pub async fn follow_logs(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        task: &TaskId,
        offset: u64,
    ) -> Result<LogStream, Error> {
        let query = [("follow", "true".to_owned()), ("offset", offset.to_string())];
        let response = self.raw(self.request(TASK_LOGS, &[ns, p, &run, task]).query(&query)).await?;
        Ok(Box::pin(response.bytes_stream().map(|chunk| chunk.map_err(Error::Transport))))
    }

    /// `GET /events`: one page of the tenant's events after the event `after` (`None`: from the
    /// first), oldest first. Resume with the last item's id; `next_cursor` is null on the last
    /// page available now.
    pub async fn list_events(&self, after: Option<&EventId>, limit: u32) -> Result<Page<Event>, Error> {
        self.list_events_filtered(&EventFilter::default(), after, limit).await
    }

    /// `GET /events` narrowed to a namespace, pipeline or run.
    pub async fn list_events_filtered(
        &self,
        filter: &EventFilter,
        after: Option<&EventId>,
        limit: u32,
    ) -> Result<Page<Event>, Error> {
        let mut query = filter.query();
        query.extend(after.map(|id| ("after", id.to_string())));
        query.push(("limit", limit.to_string()));
        self.send(self.request(LIST_EVENTS, &[]).query(&query)).await
    }

    /// Every event matching `filter` after `after` (`None`: from the first) that exists now.
    pub async fn all_events(&self, filter: &EventFilter, after: Option<&EventId>) -> Result<Vec<Event>, Error> {
        let mut events: Vec<Event> = Vec::new();
        loop {
            let from = events.last().map(|e| &e.id).or(after);
            let page = self.list_events_filtered(filter, from, gofer_core::model::MAX_PAGE_LIMIT).await?;
            let done = page.next_cursor.is_none() || page.items.is_empty();
            events.extend(page.items);
            if done {
                return Ok(events);
            }
        }
    }

    /// `GET /events` as a live stream of the events after `after` (`None`: from the first).
    pub async fn follow_events(&self, filter: &EventFilter, after: Option<&EventId>) -> Result<EventStream, Error> {
        let mut query = filter.query();
        query.extend(after.map(|id| ("after", id.to_string())));
        let request = self.request(LIST_EVENTS, &[]).query(&query).header("Accept", "text/event-stream");
        Ok(EventStream::new(self.raw(request).await?, after.cloned()))
    }
}
