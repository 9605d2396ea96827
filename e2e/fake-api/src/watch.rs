//! WATCH requests: a stream of newline-delimited JSON events for the changes to a collection
//! after a resource version, replayed from the store's history and then followed live, until
//! the client drops it or `timeoutSeconds` pass.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::representation::Representation;
use crate::route::{ApiPath, ResourceType};
use crate::selector::Selector;
use crate::server::{RequestError, Shared, json_body_response};
use crate::store::{Change, ChangeType};

/// A parsed watch request.
pub(crate) struct WatchRequest {
    resource: ResourceType,
    namespace: Option<String>,
    selector: Selector,
    start: Start,
    timeout: Option<Duration>,
    representation: Representation,
}

/// Where the stream begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No resourceVersion, or "0": the current objects as ADDED events first; with
    /// `sendInitialEvents=true` (a streaming list), then a BOOKMARK that ends them.
    CurrentObjects { end_with_bookmark: bool },
    /// Every change after this resource version.
    After(u64),
}

impl WatchRequest {
    pub(crate) fn read(
        route: &ApiPath,
        query: &HashMap<String, String>,
        selector: Selector,
        representation: Representation,
    ) -> Result<Self, RequestError> {
        let resource_version = query
            .get("resourceVersion")
            .map(String::as_str)
            .unwrap_or("");
        let start = if query
            .get("sendInitialEvents")
            .is_some_and(|flag| flag == "true")
        {
            Start::CurrentObjects {
                end_with_bookmark: true,
            }
        } else if resource_version.is_empty() || resource_version == "0" {
            Start::CurrentObjects {
                end_with_bookmark: false,
            }
        } else {
            let after = resource_version
                .parse()
                .map_err(|_| RequestError::BadResourceVersion(resource_version.to_owned()))?;
            Start::After(after)
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(seconds) => {
                Some(Duration::from_secs(seconds.parse().map_err(|_| {
                    RequestError::BadQuery(format!("timeoutSeconds={seconds}"))
                })?))
            }
            None => None,
        };
        Ok(Self {
            resource: route.resource.clone(),
            namespace: route.namespace.clone(),
            selector,
            start,
            timeout,
            representation,
        })
    }

    pub(crate) fn respond(self, shared: Arc<Shared>) -> Response {
        let mut queue = VecDeque::new();
        let (cursor, latest) = {
            let store = shared.store();
            // Subscribed under the lock that the snapshot below is read under: every write
            // after the snapshot wakes the stream.
            let latest = store.subscribe();
            let cursor = match self.start {
                Start::CurrentObjects { end_with_bookmark } => {
                    let current =
                        store.list(&self.resource, self.namespace.as_deref(), &self.selector);
                    queue.extend(current.map(|object| self.line("ADDED", object)));
                    if end_with_bookmark {
                        let kind = store.kind(&self.resource);
                        let bookmark = self.representation.bookmark(
                            &self.resource,
                            kind,
                            store.resource_version(),
                        );
                        queue.push_back(event_line("BOOKMARK", &bookmark));
                    }
                    store.resource_version()
                }
                Start::After(resource_version) => resource_version,
            };
            (cursor, latest)
        };
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        let stream = Stream {
            shared,
            request: self,
            cursor,
            queue,
            latest,
            deadline,
            ended: false,
        };
        let body = Body::from_stream(futures::stream::unfold(stream, Stream::next_line));
        json_body_response(StatusCode::OK, body)
    }

    /// The event this watch sees for a change, if any. With a label selector, an object that
    /// starts matching is ADDED and one that stops matching is DELETED, as in Kubernetes.
    fn event_for<'change>(
        &self,
        change: &'change Change,
    ) -> Option<(&'static str, &'change Value)> {
        if change.key.resource != self.resource
            || self
                .namespace
                .as_ref()
                .is_some_and(|namespace| *namespace != change.key.namespace)
        {
            return None;
        }
        let matches_now = self.selector.matches(&change.object);
        let matched_before = change
            .previous
            .as_ref()
            .is_some_and(|previous| self.selector.matches(previous));
        let event_type = match change.change_type {
            ChangeType::Added => matches_now.then_some("ADDED")?,
            ChangeType::Deleted => matched_before.then_some("DELETED")?,
            ChangeType::Modified => match (matched_before, matches_now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
        };
        Some((event_type, &change.object))
    }

    fn line(&self, event_type: &str, object: &Value) -> Bytes {
        event_line(event_type, &self.representation.object(object))
    }
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The state of one open watch stream.
struct Stream {
    shared: Arc<Shared>,
    request: WatchRequest,
    /// The resource version of the last change looked at.
    cursor: u64,
    queue: VecDeque<Bytes>,
    latest: watch::Receiver<u64>,
    deadline: Option<Instant>,
    ended: bool,
}

impl Stream {
    async fn next_line(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                return Some((Ok(line), self));
            }
            if self.ended {
                return None;
            }
            // Marked seen before reading the history, so a write after the read still wakes us.
            self.latest.borrow_and_update();
            self.catch_up();
            if !self.queue.is_empty() || self.ended {
                continue;
            }
            let deadline = self.deadline;
            let changed = self.latest.changed();
            let woken = match deadline {
                Some(deadline) => {
                    matches!(tokio::time::timeout_at(deadline, changed).await, Ok(Ok(())))
                }
                None => changed.await.is_ok(),
            };
            if !woken {
                return None;
            }
        }
    }

    /// Queues the events of the changes after the cursor. A cursor older than the kept history
    /// ends the stream with an ERROR event carrying 410 Expired, as the API server's watch
    /// cache answers after compaction; watchers then list again.
    fn catch_up(&mut self) {
        let store = self.shared.store();
        match store.changes_after(self.cursor) {
            Ok(changes) => {
                for change in changes {
                    self.cursor = change.resource_version;
                    if let Some((event_type, object)) = self.request.event_for(change) {
                        self.queue.push_back(self.request.line(event_type, object));
                    }
                }
            }
            Err(expired) => {
                self.queue
                    .push_back(event_line("ERROR", &RequestError::from(expired).status()));
                self.ended = true;
            }
        }
    }
}
