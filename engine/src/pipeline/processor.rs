//! The processor thread of a pipeline: watermark and lateness, every view of the
//! pipeline, sink queues and checkpoints, one micro-batch at a time.

use super::*;

pub(super) struct Processor {
    pub(super) source: String,
    pub(super) watermark_decl: Option<WatermarkDecl>,
    pub(super) tracker: WatermarkTracker,
    pub(super) stats: Arc<SourceStats>,
    pub(super) system: Arc<SystemLog>,
    pub(super) views: Arc<RwLock<Vec<ViewNode>>>,
    pub(super) sinks: Arc<RwLock<Vec<SinkNode>>>,
    /// The running pipeline's stop flag (a sink with a full queue stops waiting on it).
    pub(super) stop: Arc<AtomicBool>,
    pub(super) primary: Arc<AtomicBool>,
    /// The source position after the last processed batch.
    pub(super) position: serde_json::Value,
    pub(super) checkpointer: Option<Checkpointer>,
    /// The source's pipelines, told of each checkpoint.
    pub(super) readers: Arc<Readers>,
    /// A pair's pipeline: its two sources, each with whether pipelines of its own record
    /// its dead letters and late events (this one does when it has none).
    pub(super) recorded_elsewhere: Vec<(String, Arc<AtomicBool>)>,
    /// Set when a batch failed half-way: the state is no longer consistent, so nothing is
    /// processed or checkpointed any more.
    pub(super) failed: bool,
    /// A partition lane's lease: once it is lost the lane stops where it is.
    pub(super) fence: Option<Fence>,
}

impl Processor {
    pub(super) fn run(&mut self, rx: Receiver<Message>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Acquire) && !self.failed {
            if let Some(fence) = self.fence.as_ref().filter(|f| !f.is_current()) {
                if fence.lost() {
                    // Another replica owns the partition now: nothing more is processed,
                    // checkpointed or handed to sinks here.
                    tracing::warn!(source = %self.source, "{}", fence.reason());
                    self.stats.set_status(fence.reason());
                    self.failed = true;
                    return;
                }
                // Not renewed lately: wait for the next renewal before doing anything.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let msg = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.checkpoint(false);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let result = match msg {
                Message::Batch(b) => {
                    let began = Instant::now();
                    let r = self.on_batch(b).and_then(|_| self.push_updates(false));
                    self.stats.batch_latency.observe(began.elapsed());
                    r
                }
                Message::Idle => {
                    self.mark_caught_up();
                    self.push_updates(false)
                }
                Message::Waiting => Ok(()),
                Message::End => {
                    self.tracker.finish();
                    let wm = self.tracker.watermark();
                    self.stats.watermark.store(wm, Ordering::Relaxed);
                    let r = self
                        .dispatch(None, Vec::new(), wm)
                        .and_then(|_| self.push_updates(true));
                    self.stats.set_status("finished");
                    self.mark_caught_up();
                    self.dirty();
                    r
                }
            };
            if let Err(e) = result {
                tracing::error!(source = %self.source, error = %e, "pipeline failed");
                self.stats.set_status(format!("error: {e}"));
                self.failed = true;
                return;
            }
            self.checkpoint(false);
        }
    }

    /// Continues from a checkpoint (view states are restored by the caller).
    pub(super) fn resume(&mut self, restored: Restored) {
        let m = restored.manifest;
        self.tracker = m.tracker;
        self.tracker.set_holding(None);
        self.position = m.position;
        self.stats.set_counters(m.counters);
        self.stats
            .watermark
            .store(self.tracker.watermark(), Ordering::Relaxed);
        *self.stats.position.lock() = self.position.clone();
        *self.stats.committed.lock() = Some(self.position.clone());
        self.stats.record_checkpoint(m.epoch, 0, 0, Duration::ZERO);
        if self.primary.load(Ordering::Acquire) {
            let (dead, late) = log_rows(&self.source, restored.log);
            self.system.add_dead_letters(dead);
            self.system.add_late_events(late);
        }
    }

    pub(super) fn dirty(&mut self) {
        if let Some(c) = self.checkpointer.as_mut() {
            c.dirty = true;
        }
    }

    /// Takes a checkpoint if the state changed and the interval passed (or `force`). The
    /// state is captured here, between two batches; a thread of the checkpointer writes it
    /// while processing goes on. `force` waits until it is written.
    pub(super) fn checkpoint(&mut self, force: bool) {
        let Some(ck) = self.checkpointer.as_mut() else {
            return;
        };
        ck.collect(&self.stats, &self.source, force);
        self.apply_checkpoint();
        let Some(ck) = self.checkpointer.as_mut() else {
            return;
        };
        if self.failed
            || ck.in_flight.is_some()
            || !(ck.dirty || ck.sinks_behind)
            || (!force && ck.last.elapsed() < ck.interval)
        {
            return;
        }
        let began = Instant::now();
        ck.last = began;
        let nodes = self.views.read().clone();
        let mut views = Vec::with_capacity(nodes.len());
        let mut covered = HashMap::new();
        for node in &nodes {
            let name = node.view.name();
            let persisted = ck.persisted.get(name).copied().unwrap_or(0);
            match node.view.checkpoint(persisted) {
                Ok((snapshot, batches)) => {
                    views.push(snapshot);
                    covered.insert(name.to_string(), batches);
                }
                Err(e) => {
                    tracing::error!(source = %self.source, view = %name, error = %e, "cannot capture view state; checkpoint skipped");
                    return;
                }
            }
        }
        let mut sinks = Vec::new();
        let mut sinks_covered = HashMap::new();
        for node in self.sinks.read().iter() {
            let name = node.sink.name();
            let persisted = ck.sink_persisted.get(name).copied().unwrap_or(0);
            let (snapshot, upto) = node.sink.checkpoint(persisted);
            sinks.push(snapshot);
            sinks_covered.insert(name.to_string(), upto);
        }
        ck.sinks_behind = sinks.iter().any(|k| k.acked < k.pushed);
        let snapshot = Snapshot {
            position: self.position.clone(),
            tracker: self.tracker.clone(),
            counters: self.stats.counters(),
            views,
            sinks,
            new_log: ck.pending_log.clone(),
        };
        ck.dirty = false;
        ck.send(snapshot, covered, sinks_covered, began);
        self.stats
            .checkpoint_capture_micros
            .store(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        if force {
            ck.collect(&self.stats, &self.source, true);
            self.apply_checkpoint();
        }
    }

    /// After a checkpoint was written: sinks learn which files hold their queued rows, and
    /// views drop the rows that moved to history.
    pub(super) fn apply_checkpoint(&mut self) {
        let Some(ck) = self.checkpointer.as_mut() else {
            return;
        };
        let files = ck.sink_files.take();
        let history = ck.history.take();
        if let Some((root, moved)) = history {
            for node in self.views.read().iter() {
                if let Some((_, evicted, files)) =
                    moved.iter().find(|(n, ..)| n == node.view.name())
                {
                    node.view
                        .commit_history(*evicted, root.clone(), files.clone());
                }
            }
        }
        let Some(files) = files else {
            return;
        };
        // A checkpoint was written: the connector may free what no pipeline reads again.
        self.readers.release();
        for node in self.sinks.read().iter() {
            if let Some((_, segments)) = files.iter().find(|(n, _)| n == node.sink.name()) {
                node.sink.spilled(segments.clone());
            }
        }
    }

    pub(super) fn mark_caught_up(&self) {
        for node in self.views.read().iter() {
            node.view.stats.caught_up.store(true, Ordering::Release);
        }
        self.stats.caught_up.store(true, Ordering::Release);
    }

    /// Whether another pipeline records `source`'s dead letters and late events.
    fn recorded_elsewhere(&self, source: &str) -> bool {
        self.recorded_elsewhere
            .iter()
            .any(|(s, reading)| s == source && reading.load(Ordering::Acquire))
    }

    pub(super) fn record_dead_letters(&mut self, mut rows: Vec<DeadLetterRow>) {
        if !self.primary.load(Ordering::Acquire) {
            return;
        }
        rows.retain(|r| !self.recorded_elsewhere(&r.source));
        for r in &mut rows {
            r.raw = bounded_raw(std::mem::take(&mut r.raw));
        }
        if let Some(ck) = self.checkpointer.as_mut() {
            let room = ck.log_room();
            ck.pending_log
                .extend(rows.iter().take(room).map(|r| LogRecord::DeadLetter {
                    location: r.location.clone(),
                    raw: r.raw.clone(),
                    error: r.error.clone(),
                    received_at_ms: r.received_at.timestamp_millis(),
                    source: (r.source != self.source).then(|| r.source.clone()),
                }));
        }
        self.system.add_dead_letters(rows);
    }

    pub(super) fn record_late_events(&mut self, mut rows: Vec<LateEventRow>) {
        if !self.primary.load(Ordering::Acquire) {
            return;
        }
        rows.retain(|r| !self.recorded_elsewhere(&r.source));
        for r in &mut rows {
            r.raw = r.raw.take().map(bounded_raw);
        }
        if let Some(ck) = self.checkpointer.as_mut() {
            let room = ck.log_room();
            ck.pending_log
                .extend(rows.iter().take(room).map(|r| LogRecord::Late {
                    source: (r.source != self.source).then(|| r.source.clone()),
                    location: r.location.clone(),
                    event_time: r.event_time,
                    watermark: r.watermark,
                    raw: r.raw.clone(),
                    received_at_ms: r.received_at.timestamp_millis(),
                }));
        }
        self.system.add_late_events(rows);
    }

    pub(super) fn on_batch(&mut self, b: SourceBatch) -> Result<()> {
        let now = Utc::now();
        let n = b.batch.num_rows();
        self.stats.events_in.fetch_add(n as u64, Ordering::Relaxed);
        // Rows of a pair are in the pair's shape: `SELECT … FROM` a source reads its own.
        if self.primary.load(Ordering::Acquire) && b.origins.source().is_none() {
            self.system.add_recent(&self.source, &b.batch);
        }
        // Dead and late rows are named after the source they came from.
        let source = b.origins.source().unwrap_or(&self.source).to_string();
        *self.stats.position.lock() = b.position.clone();
        self.position = b.position;
        self.dirty();
        if !b.dead_letters.is_empty() {
            self.stats
                .dead_letters
                .fetch_add(b.dead_letters.len() as u64, Ordering::Relaxed);
            let source = source.clone();
            self.record_dead_letters(
                b.dead_letters
                    .into_iter()
                    .map(|d| DeadLetterRow {
                        source: source.clone(),
                        location: d.location,
                        raw: d.raw,
                        error: d.error,
                        received_at: now,
                    })
                    .collect(),
            );
        }
        let Some(decl) = self.watermark_decl else {
            let wm = self.tracker.watermark();
            self.push_to_sinks(None, std::slice::from_ref(&b.batch));
            return self.dispatch(None, vec![b.batch], wm);
        };
        let times = timestamps_ns(b.batch.column(decl.column))?;
        if b.holding_splits.is_some() {
            self.tracker.set_holding(b.holding_splits.clone());
        }
        // One event dated far in the future would move the watermark past every valid
        // event that follows: such events are dead letters and never observed.
        let limit = decl
            .max_future_ns
            .map(|f| (now.timestamp_nanos_opt().unwrap_or(i64::MAX)).saturating_add(f));
        let future = |i: usize| limit.is_some_and(|l| times.is_valid(i) && times.value(i) > l);
        let observed = (0..n).map(|i| {
            (!future(i))
                .then(|| times.is_valid(i).then(|| times.value(i)))
                .flatten()
        });
        let late = self.tracker.observe(observed, b.origins.splits());
        let mut keep = Vec::with_capacity(n);
        let mut dead = Vec::new();
        let mut late_rows = Vec::new();
        for (i, missed) in late.iter().enumerate() {
            if times.is_null(i) || future(i) {
                dead.push(i);
            } else if let Some(wm) = missed {
                late_rows.push((i, *wm));
            }
            keep.push(times.is_valid(i) && missed.is_none() && !future(i));
        }
        if !dead.is_empty() {
            // Not events after all: each input line counts once, as an event or a dead letter.
            self.stats
                .events_in
                .fetch_sub(dead.len() as u64, Ordering::Relaxed);
            self.stats
                .dead_letters
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
            let column = match b.origins.time_column() {
                Some(c) => c.to_string(),
                None => b.batch.schema().field(decl.column).name().clone(),
            };
            let rows: Vec<DeadLetterRow> = dead
                .iter()
                .map(|&i| DeadLetterRow {
                    source: source.clone(),
                    location: b.origins.location(&self.source, i),
                    raw: b.origins.raw(i).unwrap_or_default(),
                    error: if times.is_null(i) {
                        format!("event time column \"{column}\" is null or missing")
                    } else {
                        format!(
                            "event time {} of column \"{column}\" is more than max_future ({} s) ahead of the clock; it would make every later event late",
                            chrono::DateTime::from_timestamp_nanos(times.value(i)).to_rfc3339(),
                            decl.max_future_ns.unwrap_or(0) / 1_000_000_000
                        )
                    },
                    received_at: now,
                })
                .collect();
            self.record_dead_letters(rows);
        }
        // Source sinks get every event with an event time, late ones included (dead
        // letters are not events).
        if dead.is_empty() {
            self.push_to_sinks(None, std::slice::from_ref(&b.batch));
        } else if self.has_sinks(None) {
            let valid = BooleanArray::from(
                (0..n)
                    .map(|i| Some(times.is_valid(i) && !future(i)))
                    .collect::<Vec<_>>(),
            );
            self.push_to_sinks(None, &[filter_record_batch(&b.batch, &valid)?]);
        }
        if !late_rows.is_empty() {
            self.stats
                .late_events
                .fetch_add(late_rows.len() as u64, Ordering::Relaxed);
            let rows: Vec<LateEventRow> = late_rows
                .iter()
                .map(|&(i, wm)| LateEventRow {
                    source: source.clone(),
                    location: b.origins.location(&self.source, i),
                    event_time: times.value(i),
                    watermark: wm,
                    raw: b.origins.raw(i),
                    received_at: now,
                })
                .collect();
            self.record_late_events(rows);
        }
        let on_time = if keep.iter().all(|k| *k) {
            b.batch
        } else {
            filter_record_batch(&b.batch, &BooleanArray::from(keep))?
        };
        let wm = self.tracker.watermark();
        self.stats.watermark.store(wm, Ordering::Relaxed);
        if wm != i64::MAX {
            self.stats.last_watermark.store(wm, Ordering::Relaxed);
        }
        if b.origins.splits().is_some() {
            *self.stats.split_watermarks.lock() = self.tracker.split_watermarks();
        }
        self.dispatch(None, vec![on_time], wm)
    }

    /// Feeds `batches` to every view whose input is `parent` (the source when `None`), then
    /// their emitted rows to their own dependants.
    pub(super) fn dispatch(
        &self,
        parent: Option<&str>,
        batches: Vec<RecordBatch>,
        wm: i64,
    ) -> Result<()> {
        let nodes: Vec<ViewNode> = self
            .views
            .read()
            .iter()
            .filter(|n| n.parent.as_deref() == parent)
            .cloned()
            .collect();
        for node in nodes {
            let emitted = node.view.process(batches.clone(), wm)?;
            self.push_to_sinks(Some(node.view.name()), &emitted);
            let child_wm = node.view.output_watermark(wm);
            self.dispatch(Some(node.view.name()), emitted, child_wm)?;
        }
        Ok(())
    }
}

impl Processor {
    pub(super) fn has_sinks(&self, view: Option<&str>) -> bool {
        self.sinks.read().iter().any(|s| s.reads(view))
    }

    /// Hands rows of `view` (the source's events for `None`) to the sinks reading it.
    pub(super) fn push_to_sinks(&self, view: Option<&str>, batches: &[RecordBatch]) {
        if batches.is_empty() {
            return;
        }
        let sinks: Vec<Arc<SinkRuntime>> = self
            .sinks
            .read()
            .iter()
            .filter(|s| s.reads(view))
            .map(|s| s.sink.clone())
            .collect();
        for sink in sinks {
            sink.push(batches, &self.stop);
        }
    }

    /// Sends the open windows of updating views to their sinks when due (`force`: now).
    pub(super) fn push_updates(&self, force: bool) -> Result<()> {
        let sinks: Vec<SinkNode> = self
            .sinks
            .read()
            .iter()
            .filter(|s| s.sink.spec().updating)
            .cloned()
            .collect();
        for s in sinks {
            let Some(view) = s.view.as_ref().and_then(|v| {
                self.views
                    .read()
                    .iter()
                    .find(|n| n.view.name() == v)
                    .map(|n| n.view.clone())
            }) else {
                continue;
            };
            if s.sink.update_due() || force {
                s.sink.push(&view.open_rows_snapshot()?, &self.stop);
            }
        }
        // Alert rules over updating views see the open windows too: they can fire
        // mid-window.
        let rules: Vec<(Arc<ViewRuntime>, Arc<ViewRuntime>)> = {
            let nodes = self.views.read();
            nodes
                .iter()
                .filter(|n| n.view.is_alert())
                .filter_map(|n| {
                    let parent = nodes
                        .iter()
                        .find(|p| Some(p.view.name()) == n.parent.as_deref())?;
                    Some((n.view.clone(), parent.view.clone()))
                })
                .collect()
        };
        for (rule, parent) in rules {
            if !parent.updating() || !(force || rule.updates_due(ALERT_UPDATE_INTERVAL)) {
                continue;
            }
            let open = parent.open_rows_snapshot()?;
            let wm = rule.stats.watermark.load(Ordering::Relaxed);
            let emitted = rule.process(open, wm)?;
            self.push_to_sinks(Some(rule.name()), &emitted);
        }
        Ok(())
    }
}

/// Persisted log records back as system-log rows of `source`.
pub(super) fn log_rows(
    source: &str,
    records: Vec<LogRecord>,
) -> (Vec<DeadLetterRow>, Vec<LateEventRow>) {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut dead = Vec::new();
    let mut late = Vec::new();
    for r in records {
        match r {
            LogRecord::DeadLetter {
                location,
                raw,
                error,
                received_at_ms,
                source: from,
            } => dead.push(DeadLetterRow {
                source: from.unwrap_or_else(|| source.to_string()),
                location,
                raw,
                error,
                received_at: at(received_at_ms),
            }),
            LogRecord::Late {
                source: from,
                location,
                event_time,
                watermark,
                raw,
                received_at_ms,
            } => late.push(LateEventRow {
                source: from.unwrap_or_else(|| source.to_string()),
                location,
                event_time,
                watermark,
                raw,
                received_at: at(received_at_ms),
            }),
        }
    }
    (dead, late)
}
