//! Recovery as a plan: from what the checkpoints on disk hold and what the catalog defines,
//! decide which pipelines run, where each view and sink resumes, and which checkpoint
//! directories go. No I/O happens here: the engine reads the checkpoints, asks for a
//! [`RecoveryPlan`], restores state as it says and starts the pipelines.
//!
//! The rules:
//! - Checkpoints taken at the same point of the input (same position and watermarks, as after
//!   a clean shutdown of a quiet or finished source) are merged into the oldest one, so views
//!   that backfilled separately share one reader again.
//! - A view resumes from a checkpoint holding state of the same definition (fingerprint); a
//!   view over a view only in the pipeline where its parent is. Otherwise a view over a view
//!   joins its parent's pipeline and is seeded with the rows the parent emitted; any other
//!   view goes to one new pipeline that reads the source from its start.
//! - A sink resumes its queue from a checkpoint of the same definition in the pipeline of its
//!   view; otherwise it joins its view's pipeline, seeded with the view's rows. A sink on a
//!   source joins a pipeline reading from the start (a new one if none does).
//! - A pipeline left without views or sinks is deleted, with the pipelines merged into it.

use std::collections::{BTreeMap, BTreeSet};

/// What one pipeline's last checkpoint holds, as far as recovery is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct OnDisk {
    pub id: u64,
    /// The point of the input the checkpoint was taken at (position and watermarks).
    pub point: serde_json::Value,
    /// Views with state, by name: their definitions' fingerprints.
    pub views: BTreeMap<String, String>,
    /// Sinks with a queue, by name: their fingerprints.
    pub sinks: BTreeMap<String, String>,
}

/// A view the catalog defines on the source. Parents come before their children.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedView {
    pub name: String,
    pub fingerprint: String,
    /// The view it reads, for a view over a view.
    pub parent: Option<String>,
}

/// A sink the catalog defines on the source or one of its views.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedSink {
    pub name: String,
    pub fingerprint: String,
    /// The view it reads (none: it reads the source's events).
    pub view: Option<String>,
}

/// How a view starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewStart {
    /// Restore the state checkpointed by pipeline `from` (this pipeline, or one merged
    /// into it).
    Resume { from: u64 },
    /// Empty, then fed every row its parent has emitted.
    Seed,
    /// Empty; the pipeline reads the source from its start.
    Fresh,
}

/// How a sink starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkStart {
    /// Restore the queue checkpointed by pipeline `from`.
    Resume { from: u64 },
    /// Empty, then handed every row its view has.
    Seed,
    /// Empty (a sink on the source, in a pipeline reading from the start).
    Fresh,
}

/// One pipeline to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPipeline {
    pub id: u64,
    /// Whether it continues from its own checkpoint (otherwise it reads from the start).
    pub restored: bool,
    /// Pipelines merged into it: their directories go once it has checkpointed.
    pub absorbed: Vec<u64>,
    pub views: Vec<(String, ViewStart)>,
    pub sinks: Vec<(String, SinkStart)>,
}

impl PlannedPipeline {
    fn has(&self, view: &str) -> bool {
        self.views.iter().any(|(n, _)| n == view)
    }
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecoveryPlan {
    /// Pipelines to run, by id.
    pub pipelines: Vec<PlannedPipeline>,
    /// Checkpoint directories to delete: every view and sink they held was dropped or
    /// redefined.
    pub delete: Vec<u64>,
    /// The next unused pipeline id.
    pub next_id: u64,
}

impl RecoveryPlan {
    /// The pipeline holding `view`.
    pub fn pipeline_of(&self, view: &str) -> Option<&PlannedPipeline> {
        self.pipelines.iter().find(|p| p.has(view))
    }
}

/// Plans recovery of one source. `on_disk` is ordered by id; `next_id` is the first id no
/// pipeline of the source has used.
pub fn plan(
    on_disk: &[OnDisk],
    views: &[WantedView],
    sinks: &[WantedSink],
    next_id: u64,
) -> RecoveryPlan {
    let mut next_id = on_disk
        .iter()
        .map(|d| d.id + 1)
        .max()
        .unwrap_or(0)
        .max(next_id);
    // Merge checkpoints at the same point into the oldest: (pipeline, absorbed, and for
    // every view and sink, its fingerprint and the pipeline holding its state).
    struct Merged {
        id: u64,
        absorbed: Vec<u64>,
        views: BTreeMap<String, (String, u64)>,
        sinks: BTreeMap<String, (String, u64)>,
    }
    let mut merged: Vec<(serde_json::Value, Merged)> = Vec::new();
    for d in on_disk {
        let own = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, f)| (k.clone(), (f.clone(), d.id)))
                .collect::<BTreeMap<_, _>>()
        };
        match merged.iter_mut().find(|(point, _)| *point == d.point) {
            Some((_, target)) => {
                for (k, v) in own(&d.views) {
                    target.views.entry(k).or_insert(v);
                }
                for (k, v) in own(&d.sinks) {
                    target.sinks.entry(k).or_insert(v);
                }
                target.absorbed.push(d.id);
            }
            None => merged.push((
                d.point.clone(),
                Merged {
                    id: d.id,
                    absorbed: Vec::new(),
                    views: own(&d.views),
                    sinks: own(&d.sinks),
                },
            )),
        }
    }
    let mut pipelines: Vec<PlannedPipeline> = merged
        .iter()
        .map(|(_, m)| PlannedPipeline {
            id: m.id,
            restored: true,
            absorbed: m.absorbed.clone(),
            views: Vec::new(),
            sinks: Vec::new(),
        })
        .collect();
    let state = |i: usize| &merged[i].1;
    let mut fresh: Option<usize> = None;
    for v in views {
        let home = (0..merged.len()).find(|&i| {
            state(i)
                .views
                .get(&v.name)
                .is_some_and(|(f, _)| *f == v.fingerprint)
                && v.parent.as_ref().is_none_or(|p| pipelines[i].has(p))
        });
        if let Some(i) = home {
            let from = state(i).views[&v.name].1;
            pipelines[i]
                .views
                .push((v.name.clone(), ViewStart::Resume { from }));
            continue;
        }
        if let Some(parent) = &v.parent {
            if let Some(p) = pipelines.iter_mut().find(|p| p.has(parent)) {
                p.views.push((v.name.clone(), ViewStart::Seed));
                continue;
            }
        }
        let i = *fresh.get_or_insert_with(|| new_pipeline(&mut pipelines, &mut next_id));
        pipelines[i].views.push((v.name.clone(), ViewStart::Fresh));
    }
    for k in sinks {
        let home = (0..merged.len()).find(|&i| {
            state(i)
                .sinks
                .get(&k.name)
                .is_some_and(|(f, _)| *f == k.fingerprint)
                && k.view.as_ref().is_none_or(|v| pipelines[i].has(v))
        });
        if let Some(i) = home {
            let from = state(i).sinks[&k.name].1;
            pipelines[i]
                .sinks
                .push((k.name.clone(), SinkStart::Resume { from }));
            continue;
        }
        match &k.view {
            // The catalog never defines a sink on a view the source does not feed; such a
            // sink has no pipeline and is left out (the engine reports it).
            Some(v) => {
                if let Some(p) = pipelines.iter_mut().find(|p| p.has(v)) {
                    p.sinks.push((k.name.clone(), SinkStart::Seed));
                }
            }
            None => {
                let i = match pipelines.iter().position(|p| !p.restored) {
                    Some(i) => i,
                    None => new_pipeline(&mut pipelines, &mut next_id),
                };
                pipelines[i].sinks.push((k.name.clone(), SinkStart::Fresh));
            }
        }
    }
    let mut delete = Vec::new();
    pipelines.retain(|p| {
        let keep = !p.views.is_empty() || !p.sinks.is_empty();
        if !keep {
            delete.push(p.id);
            delete.extend(&p.absorbed);
        }
        keep
    });
    pipelines.sort_by_key(|p| p.id);
    delete.sort_unstable();
    RecoveryPlan {
        pipelines,
        delete,
        next_id,
    }
}

/// Adds a pipeline that reads the source from its start; returns its index.
fn new_pipeline(pipelines: &mut Vec<PlannedPipeline>, next_id: &mut u64) -> usize {
    pipelines.push(PlannedPipeline {
        id: *next_id,
        restored: false,
        absorbed: Vec::new(),
        views: Vec::new(),
        sinks: Vec::new(),
    });
    *next_id += 1;
    pipelines.len() - 1
}

/// The sinks a plan leaves out (a sink whose view has no pipeline).
pub fn unplaced_sinks(plan: &RecoveryPlan, sinks: &[WantedSink]) -> BTreeSet<String> {
    sinks
        .iter()
        .filter(|k| {
            !plan
                .pipelines
                .iter()
                .any(|p| p.sinks.iter().any(|(n, _)| *n == k.name))
        })
        .map(|k| k.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk(id: u64, point: i64, views: &[(&str, &str)], sinks: &[(&str, &str)]) -> OnDisk {
        let map = |xs: &[(&str, &str)]| {
            xs.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        OnDisk {
            id,
            point: json!({ "next": point }),
            views: map(views),
            sinks: map(sinks),
        }
    }

    fn view(name: &str, fp: &str, parent: Option<&str>) -> WantedView {
        WantedView {
            name: name.into(),
            fingerprint: fp.into(),
            parent: parent.map(Into::into),
        }
    }

    fn sink(name: &str, fp: &str, view: Option<&str>) -> WantedSink {
        WantedSink {
            name: name.into(),
            fingerprint: fp.into(),
            view: view.map(Into::into),
        }
    }

    #[test]
    fn a_first_start_puts_every_view_in_one_new_pipeline() {
        let p = plan(
            &[],
            &[view("a", "1", None), view("b", "2", Some("a"))],
            &[sink("k", "s", Some("b")), sink("raw", "r", None)],
            0,
        );
        assert_eq!(p.pipelines.len(), 1);
        let only = &p.pipelines[0];
        assert_eq!(only.id, 0);
        assert!(!only.restored);
        // The child finds its parent already placed: it is seeded (with nothing yet).
        assert_eq!(
            only.views,
            vec![
                ("a".into(), ViewStart::Fresh),
                ("b".into(), ViewStart::Seed)
            ]
        );
        assert_eq!(
            only.sinks,
            vec![
                ("k".into(), SinkStart::Seed),
                ("raw".into(), SinkStart::Fresh)
            ]
        );
        assert_eq!(p.next_id, 1);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn views_resume_where_their_definition_was_checkpointed() {
        let on_disk = [
            disk(0, 100, &[("a", "1"), ("gone", "9")], &[("k", "s")]),
            disk(3, 50, &[("b", "2")], &[]),
        ];
        let p = plan(
            &on_disk,
            &[
                view("a", "1", None),
                view("b", "2", None),
                view("c", "3", None),
            ],
            &[sink("k", "s", Some("a"))],
            0,
        );
        let ids: Vec<u64> = p.pipelines.iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            vec![0, 3, 4],
            "a new view gets a new pipeline after the last id"
        );
        assert_eq!(
            p.pipelines[0].views,
            vec![("a".into(), ViewStart::Resume { from: 0 })]
        );
        assert_eq!(
            p.pipelines[0].sinks,
            vec![("k".into(), SinkStart::Resume { from: 0 })]
        );
        assert_eq!(
            p.pipelines[1].views,
            vec![("b".into(), ViewStart::Resume { from: 3 })]
        );
        assert_eq!(p.pipelines[2].views, vec![("c".into(), ViewStart::Fresh)]);
        assert!(p.pipelines[0].restored && !p.pipelines[2].restored);
        assert_eq!(p.next_id, 5);
    }

    #[test]
    fn a_redefined_view_rebuilds_and_an_emptied_pipeline_is_deleted() {
        let on_disk = [disk(0, 100, &[("a", "old")], &[("k", "s")])];
        let p = plan(
            &on_disk,
            &[view("a", "new", None)],
            &[sink("k", "s", Some("a"))],
            1,
        );
        assert_eq!(p.pipelines.len(), 1);
        assert_eq!(p.pipelines[0].id, 1);
        assert_eq!(p.pipelines[0].views, vec![("a".into(), ViewStart::Fresh)]);
        // The sink's queue cannot resume without its view: it starts with the view's rows.
        assert_eq!(p.pipelines[0].sinks, vec![("k".into(), SinkStart::Seed)]);
        assert_eq!(p.delete, vec![0]);
    }

    #[test]
    fn a_child_resumes_only_with_its_parent_and_is_seeded_otherwise() {
        // The parent was redefined: its child's state (same definition) cannot be trusted
        // without it, so the child is seeded from the rebuilt parent.
        let on_disk = [disk(0, 100, &[("p", "old"), ("c", "2")], &[])];
        let p = plan(
            &on_disk,
            &[view("p", "new", None), view("c", "2", Some("p"))],
            &[],
            0,
        );
        assert_eq!(p.pipelines.len(), 1);
        assert_eq!(
            p.pipelines[0].views,
            vec![
                ("p".into(), ViewStart::Fresh),
                ("c".into(), ViewStart::Seed)
            ]
        );
        assert_eq!(p.delete, vec![0]);

        // Both unchanged: both resume.
        let on_disk = [disk(0, 100, &[("p", "1"), ("c", "2")], &[])];
        let p = plan(
            &on_disk,
            &[view("p", "1", None), view("c", "2", Some("p"))],
            &[],
            0,
        );
        assert_eq!(
            p.pipelines[0].views,
            vec![
                ("p".into(), ViewStart::Resume { from: 0 }),
                ("c".into(), ViewStart::Resume { from: 0 })
            ]
        );
    }

    #[test]
    fn checkpoints_at_the_same_point_merge_into_the_oldest() {
        let on_disk = [
            disk(2, 100, &[("a", "1")], &[]),
            disk(5, 100, &[("b", "2")], &[("k", "s")]),
            disk(7, 60, &[("c", "3")], &[]),
        ];
        let p = plan(
            &on_disk,
            &[
                view("a", "1", None),
                view("b", "2", None),
                view("c", "3", None),
            ],
            &[sink("k", "s", Some("b"))],
            0,
        );
        assert_eq!(p.pipelines.len(), 2);
        let first = &p.pipelines[0];
        assert_eq!(first.id, 2);
        assert_eq!(first.absorbed, vec![5]);
        assert_eq!(
            first.views,
            vec![
                ("a".into(), ViewStart::Resume { from: 2 }),
                ("b".into(), ViewStart::Resume { from: 5 })
            ]
        );
        assert_eq!(
            first.sinks,
            vec![("k".into(), SinkStart::Resume { from: 5 })]
        );
        assert_eq!(p.pipelines[1].id, 7);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn a_source_sink_joins_a_pipeline_reading_from_the_start() {
        let on_disk = [disk(0, 100, &[("a", "1")], &[])];
        let p = plan(
            &on_disk,
            &[view("a", "1", None)],
            &[sink("raw", "r", None)],
            0,
        );
        assert_eq!(p.pipelines.len(), 2);
        assert_eq!(p.pipelines[1].id, 1);
        assert!(!p.pipelines[1].restored);
        assert_eq!(p.pipelines[1].sinks, vec![("raw".into(), SinkStart::Fresh)]);
        assert!(p.pipelines[1].views.is_empty());
        assert!(unplaced_sinks(&p, &[sink("raw", "r", None)]).is_empty());
        assert_eq!(
            unplaced_sinks(&p, &[sink("x", "r", Some("nowhere"))]),
            BTreeSet::from(["x".to_string()])
        );
    }
}
