//! Replicas sharing a topic: three `weir` processes split a 6-partition topic on a real
//! Kafka-compatible broker (tansu), checkpoints and leases in one shared directory, every
//! replica writing its partitions' `kpi_1m` rows to one PostgreSQL table. One replica is
//! killed with `kill -9` and restarted, a fourth joins (the others restart with the new
//! count, as a `helm upgrade --set replicas=4` rolls them), and a replica frozen past its
//! lease is replaced and then wakes up: the PostgreSQL table equals DataFusion's batch query
//! over every event produced, and the frozen replica writes nothing after its successor
//! took over.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::{broker, lines, produce_events, unique_topic};
use common::process::{int, Weir};
use tokio_postgres::NoTls;
use weir_connectors::datagen::{DatagenConfig, EventGenerator};

const PARTITIONS: i32 = 6;

/// 60 sources (message keys) over 6 partitions, 1 s of disorder (under the 2 s watermark
/// delay, so no event is late in any partition).
fn generator() -> EventGenerator {
    let options: BTreeMap<String, String> = [
        ("seed", "42"),
        ("rate", "2000"),
        ("sources", "60"),
        ("error_rate", "0.05"),
        ("disorder_ms", "1000"),
        ("start", "2026-11-27T10:00:00Z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    EventGenerator::new(DatagenConfig::from_options(&options).unwrap())
}

/// What every replica runs at start (`init_sql`).
fn init_sql(brokers: &str, topic: &str, url: &str) -> String {
    let source = common::kafka::kafka_source(
        "events",
        brokers,
        topic,
        ", partition_key = 'source', idle_timeout = '1s'",
    )
    .replacen("CREATE SOURCE", "CREATE SOURCE IF NOT EXISTS", 1);
    format!(
        "{source};\n\
         CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m AS {} EMIT ON UPDATE;\n\
         CREATE SINK IF NOT EXISTS kpi_pg FROM kpi_1m WITH (connector = 'postgres', \
             url = '{url}', table = 'kpi_1m');\n",
        common::kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
    )
}

/// Replica `name` with ordinal `ordinal` of `replicas`, sharing `<dir>/shared`.
fn replica(dir: &Path, init: &Path, name: &str, ordinal: u32, replicas: u32) -> Weir {
    let shared = dir.join("shared");
    let state = [("WEIR_CLUSTER__STATE_DIR", shared.to_str().unwrap())];
    replica_with(dir, init, name, ordinal, replicas, &state)
}

/// Replica `name` with ordinal `ordinal` of `replicas`, sharing state as `state` says.
fn replica_with(
    dir: &Path,
    init: &Path,
    name: &str,
    ordinal: u32,
    replicas: u32,
    state: &[(&str, &str)],
) -> Weir {
    let (ordinal, replicas) = (ordinal.to_string(), replicas.to_string());
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let mut env = vec![
        ("WEIR_CLUSTER__REPLICA", name),
        ("WEIR_CLUSTER__ORDINAL", &ordinal),
        ("WEIR_CLUSTER__REPLICAS", &replicas),
        ("WEIR_CLUSTER__LEASE_TIMEOUT", "3s"),
        ("WEIR_INIT_SQL", init.to_str().unwrap()),
    ];
    env.extend_from_slice(state);
    Weir::start_with(&dir.join(name), &env)
}

/// Per partition: the replica reading it and its position (next offset), over `replicas`.
async fn positions(replicas: &mut [&mut Weir]) -> BTreeMap<i32, (String, i64)> {
    let mut out = BTreeMap::new();
    for w in replicas.iter_mut() {
        let client = w.connect().await;
        for r in client
            .query(
                "SELECT CAST(partition AS INT), replica, coalesce(position, 0) \
                 FROM weir.source_partitions WHERE source = 'events'",
                &[],
            )
            .await
            .unwrap()
        {
            let (p, who, at): (i32, String, i64) = (r.get(0), r.get(1), r.get(2));
            assert!(
                out.insert(p, (who.clone(), at)).is_none(),
                "partition {p} is read by two replicas ({who} and another)"
            );
        }
    }
    out
}

/// Waits until the views of `replicas` together have taken in `valid` events (each
/// partition's lane counts its own, restored from its checkpoint when it moves) and every
/// lane's sink has written its rows to PostgreSQL; returns how long the events took.
async fn wait_all_read(replicas: &mut [&mut Weir], valid: usize) -> Duration {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(180);
    loop {
        let mut seen = 0;
        for w in replicas.iter_mut() {
            let client = w.connect().await;
            seen += int(
                &client,
                "SELECT rows_in FROM weir.views WHERE name = 'kpi_1m'",
            )
            .await;
        }
        assert!(
            seen <= valid as i64,
            "{seen} events counted, only {valid} produced"
        );
        if seen == valid as i64 {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas.iter().map(|w| w.log_text()).collect();
            panic!("{seen} of {valid} events read\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = began.elapsed();
    // Every lane's sink has written what its view emitted.
    for w in replicas.iter_mut() {
        let client = w.connect().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let behind = int(
                &client,
                "SELECT count(*) FROM weir.sinks WHERE name LIKE 'kpi_pg@p%' \
                 AND (backlog > 0 OR status <> 'running')",
            )
            .await;
            if behind == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "sinks behind\n{}", w.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    took
}

/// `kpi_1m` as the replicas wrote it to PostgreSQL, keyed by (source, window start ns).
async fn pg_kpis(db: &str) -> BTreeMap<(String, i64), common::Kpi> {
    let (pg, conn) = tokio_postgres::connect(&format!("{} dbname={db}", common::pg()), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = BTreeMap::new();
    for r in pg
        .query(
            "SELECT source, CAST(extract(epoch FROM window_start) AS BIGINT) * 1000000000, \
             count, avg_metric, p95_metric, error_rate FROM kpi_1m",
            &[],
        )
        .await
        .unwrap()
    {
        let key: (String, i64) = (r.get(0), r.get(1));
        let kpi = common::Kpi {
            count: r.get(2),
            avg_metric: r.get(3),
            p95_metric: r.get::<_, Option<f64>>(4).unwrap_or(f64::NAN),
            error_rate: r.get(5),
        };
        assert!(out.insert(key.clone(), kpi).is_none(), "{key:?} twice");
    }
    out
}

/// `kpi_1m` in PostgreSQL once it holds the same windows and counts as `reference`
/// (updating sinks push open windows' rows every few hundred ms), or after 30 s as it is.
async fn pg_kpis_like(
    db: &str,
    reference: &BTreeMap<(String, i64), common::Kpi>,
) -> BTreeMap<(String, i64), common::Kpi> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = pg_kpis(db).await;
        let same = written.len() == reference.len()
            && written
                .iter()
                .all(|(k, v)| reference.get(k).is_some_and(|r| r.count == v.count));
        if same || Instant::now() > deadline {
            return written;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Partition `p`'s lane checkpoints in the shared directory: per owner (lease epoch), the
/// newest manifest's checkpoint epoch and when it was written.
fn lane_checkpoints(shared: &Path, p: i32) -> BTreeMap<u64, (u64, i64)> {
    let prefix = format!("events%40p{p}%23e");
    let mut out = BTreeMap::new();
    for owner in std::fs::read_dir(shared.join("checkpoints")).unwrap() {
        let owner = owner.unwrap();
        let name = owner.file_name().into_string().unwrap();
        let Some(lease) = name
            .strip_prefix(&prefix)
            .and_then(|e| e.parse::<u64>().ok())
        else {
            continue;
        };
        for pipeline in std::fs::read_dir(owner.path()).unwrap() {
            let Ok(text) = std::fs::read_to_string(pipeline.unwrap().path().join("MANIFEST.json"))
            else {
                continue;
            };
            let m: serde_json::Value = serde_json::from_str(&text).unwrap();
            let (epoch, at) = (
                m["epoch"].as_u64().unwrap(),
                m["written_at_ms"].as_i64().unwrap(),
            );
            let e = out.entry(lease).or_insert((0, 0));
            *e = (*e).max((epoch, at));
        }
    }
    out
}

/// One run's topic, PostgreSQL database, shared directory and events produced so far.
struct Scenario {
    brokers: String,
    topic: String,
    db: String,
    dir: tempfile::TempDir,
    init: std::path::PathBuf,
    g: EventGenerator,
    produced: u64,
    per_step: u64,
}

impl Scenario {
    async fn new(name: &str) -> Self {
        let brokers = broker();
        let topic = unique_topic(name);
        let db = format!("weir_{}_{}", name.replace('-', "_"), std::process::id());
        common::fresh_database(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init.sql");
        std::fs::write(&init, init_sql(&brokers, &topic, &common::pg_url(&db, ""))).unwrap();
        Self {
            brokers,
            topic,
            db,
            dir,
            init,
            g: generator(),
            produced: 0,
            per_step: common::env_u64("WEIR_CLUSTER_EVENTS", 24_000) / 4,
        }
    }

    /// Produces `n` more events; returns how many valid ones there are so far.
    fn produce(&mut self, n: u64) -> usize {
        let (brokers, topic) = (&self.brokers, &self.topic);
        produce_events(
            brokers,
            topic,
            &self.g,
            self.produced,
            n,
            0.01,
            Some(PARTITIONS),
        );
        self.produced += n;
        let all = lines(&self.g, self.produced, 0.01);
        let (valid, late, _) = common::reference_events(&all, 2_000_000_000);
        assert_eq!(late, 0);
        valid.len()
    }

    /// Asserts that the PostgreSQL table equals the batch query over every event
    /// produced; returns its windows.
    async fn assert_pg_matches_batch(&self) -> usize {
        let all = lines(&self.g, self.produced, 0.01);
        let (events, _, _) = common::reference_events(&all, 2_000_000_000);
        let reference = common::batch(self.dir.path(), &events, common::KPI_1M_BATCH_SQL).await;
        let minute = 60_000_000_000i64;
        let exact = common::exact_p95(&events, |t| vec![t.div_euclid(minute) * minute]);
        let written = pg_kpis_like(&self.db, &reference).await;
        common::assert_equivalent(&written, &reference, &exact);
        written.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_split_the_partitions_and_lose_or_double_nothing() {
    let mut run = Scenario::new("cluster").await;
    let (dir, init) = (run.dir.path().to_path_buf(), run.init.clone());
    let per_step = run.per_step;
    let mut produce = |n: u64| run.produce(n);

    // 1. Three replicas, a third of the events: each reads its two partitions.
    let valid = produce(per_step);
    let mut w0 = replica(&dir, &init, "weir-0", 0, 3);
    let mut w1 = replica(&dir, &init, "weir-1", 1, 3);
    let mut w2 = replica(&dir, &init, "weir-2", 2, 3);
    wait_all_read(&mut [&mut w0, &mut w1, &mut w2], valid).await;
    let owners = positions(&mut [&mut w0, &mut w1, &mut w2]).await;
    for (p, (who, _)) in &owners {
        assert_eq!(who, &format!("weir-{}", p % 3), "owner of partition {p}");
    }
    assert_eq!(owners.len(), PARTITIONS as usize);

    // 2. kill -9 one replica mid-stream; it comes back and takes its partitions again.
    produce(per_step / 2);
    w1.kill();
    let valid = produce(per_step / 2);
    let restarted = Instant::now();
    w1.start_again(&[]);
    let caught_up = wait_all_read(&mut [&mut w0, &mut w1, &mut w2], valid).await;
    println!(
        "takeover after kill -9: partitions 1 and 4 read to the end {:?} after the restart",
        restarted.elapsed().max(caught_up)
    );

    // 3. A fourth replica joins: it waits for partition 3 until weir-0 lets go, as the
    // others restart one by one with the new count, events arriving meanwhile.
    let mut w3 = replica(&dir, &init, "weir-3", 3, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let c3 = w3.connect().await;
        let waiting = int(
            &c3,
            "SELECT count(*) FROM weir.cluster WHERE partition = 3 AND waiting LIKE 'waiting: weir-0%'",
        )
        .await;
        assert_eq!(
            waiting,
            1,
            "weir-3 waits for weir-0's lease\n{}",
            w3.log_text()
        );
    }
    let mut valid = valid;
    for w in [&mut w0, &mut w1, &mut w2] {
        valid = produce(per_step / 3);
        w.stop();
        w.start_again(&[("WEIR_CLUSTER__REPLICAS", "4")]);
    }
    wait_all_read(&mut [&mut w0, &mut w1, &mut w2, &mut w3], valid).await;
    let owners = positions(&mut [&mut w0, &mut w1, &mut w2, &mut w3]).await;
    for (p, (who, _)) in &owners {
        assert_eq!(
            who,
            &format!("weir-{}", p % 4),
            "owner of partition {p} of 4"
        );
    }

    // 4. weir-2 freezes past its lease; weir-2b (same ordinal) takes partition 2 over;
    // weir-2 wakes up and must write nothing more for it.
    w2.signal("STOP");
    let mut w2b = replica(&dir, &init, "weir-2b", 2, 4);
    let valid = produce(per_step);
    let frozen = Instant::now();
    wait_all_read(&mut [&mut w0, &mut w1, &mut w3, &mut w2b], valid).await;
    println!(
        "partition 2 taken over from a frozen replica in {:?}",
        frozen.elapsed()
    );
    assert!(
        w2b.log_text()
            .contains("view state restored from checkpoint"),
        "weir-2b restores partition 2's state: {}",
        w2b.log_text()
    );
    let epoch = {
        let c = w2b.connect().await;
        int(
            &c,
            "SELECT lease_epoch FROM weir.cluster WHERE partition = 2 AND read_here",
        )
        .await as u64
    };
    // weir-2b checkpoints under its own lease epoch, in a directory that started as a copy
    // of weir-2's; its checkpoint epochs carry the lease epoch.
    let shared = dir.join("shared");
    let deadline = Instant::now() + Duration::from_secs(10);
    let own = |c: &BTreeMap<u64, (u64, i64)>| c.get(&epoch).is_some_and(|(e, _)| e >> 32 == epoch);
    while !own(&lane_checkpoints(&shared, 2)) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            lane_checkpoints(&shared, 2)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = lane_checkpoints(&shared, 2);
    let woke_ms = chrono::Utc::now().timestamp_millis();
    w2.signal("CONT");
    {
        let c2 = w2.connect().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while int(&c2, "SELECT count(*) FROM weir.cluster WHERE read_here").await > 0 {
            assert!(
                Instant::now() < deadline,
                "weir-2 still reads\n{}",
                w2.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = lane_checkpoints(&shared, 2);
    // A manifest composed after the wake-up would have passed the fence: there is none.
    // (One composed before the freeze may still land in weir-2's own directory.)
    assert!(
        after[&(epoch - 1)].1 < woke_ms,
        "the frozen replica wrote a checkpoint after it woke up: {after:?}"
    );
    assert!(after[&epoch] >= before[&epoch]);
    let log = w2.log_text();
    assert!(
        log.contains("fenced") || log.contains("lease lost"),
        "{log}"
    );

    // The union the replicas wrote equals the batch query over every event.
    let windows = run.assert_pg_matches_batch().await;
    println!(
        "{} events over {PARTITIONS} partitions: {windows} windows in PostgreSQL equal the batch query",
        run.produced
    );
    drop((w0, w1, w2, w3, w2b));
    common::drop_database(&run.db).await;
}

/// The same with the replicas' shared state in S3-compatible storage (moto) instead of a
/// shared directory: two replicas split the topic; one is killed with `kill -9` and
/// replaced by another replica (another name, an empty data dir) that takes its partitions
/// once their leases expire, from the checkpoints in the bucket. The PostgreSQL table
/// equals the batch query over every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_their_state_through_s3() {
    let mut run = Scenario::new("cluster-s3").await;
    let s3 = common::s3::S3Server::start().await;
    let (status, body) = common::http_text(s3.addr, "PUT", "/weir-cluster", "").await;
    assert_eq!(status, 200, "creating the bucket: {body}");
    let endpoint = format!("http://{}", s3.addr);
    let state = [
        ("WEIR_CLUSTER__STATE_URL", "s3://weir-cluster/state"),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "weir-test"),
        ("AWS_SECRET_ACCESS_KEY", "weir-test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let (dir, init) = (run.dir.path().to_path_buf(), run.init.clone());
    let per_step = run.per_step;
    let mut produce = |n: u64| run.produce(n);

    let valid = produce(per_step);
    let mut w0 = replica_with(&dir, &init, "weir-0", 0, 2, &state);
    let mut w1 = replica_with(&dir, &init, "weir-1", 1, 2, &state);
    wait_all_read(&mut [&mut w0, &mut w1], valid).await;
    // Each lane copies its checkpoints to the bucket.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s3
        .keys_ending("weir-cluster", "state/checkpoints/", "MANIFEST.json")
        .await
        < 6
    {
        assert!(
            Instant::now() < deadline,
            "lane checkpoints not in the bucket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s3.keys_ending("weir-cluster", "state/leases/", ".beat")
            .await
            >= 6
    );

    // Killed once its events are checkpointed (and copied to the bucket): tansu numbers
    // offsets by record batch and cannot resume inside one, so a replica killed mid-batch
    // would resume past messages there (real Kafka brokers can).
    let valid_before = produce(per_step / 2);
    wait_all_read(&mut [&mut w0, &mut w1], valid_before).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    w1.kill();
    let valid = produce(per_step / 2);
    let replaced = Instant::now();
    let mut w1b = replica_with(&dir, &init, "weir-1b", 1, 2, &state);
    wait_all_read(&mut [&mut w0, &mut w1b], valid).await;
    println!(
        "partitions 1, 3 and 5 taken over through S3 by another replica in {:?}",
        replaced.elapsed()
    );
    // From the bucket, not by reading the partitions again from their start.
    assert!(
        w1b.log_text()
            .contains("view state restored from checkpoint"),
        "{}",
        w1b.log_text()
    );
    let owners = positions(&mut [&mut w0, &mut w1b]).await;
    for (p, (who, _)) in &owners {
        let want = if p % 2 == 0 { "weir-0" } else { "weir-1b" };
        assert_eq!(who, want, "owner of partition {p}");
    }

    run.assert_pg_matches_batch().await;
    drop((w0, w1, w1b));
    common::drop_database(&run.db).await;
}
