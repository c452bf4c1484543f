//! The Helm chart (`helm/weir`): Helm's own lint and install against a stand-in API server,
//! every manifest validated against the Kubernetes schemas (`helm/check_chart.py`), then
//! the `weir.toml` each install rendered, with the Secret the pod would mount, loaded by
//! Weir's configuration loader — and the default install's run by a real `weir` process:
//! the admin logs in over pgwire with the generated password, REST takes the generated
//! tokens and refuses requests without one, and the probes answer.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Weir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the chart checker into `out`; panics with its output unless everything is valid.
fn check_chart(out: &Path) -> String {
    let python = std::env::var("WEIR_HELM_PYTHON").expect(
        "WEIR_HELM_PYTHON is not set: run the tests with scripts/test.sh, which installs the chart checker (Helm's library, kubernetes-validate)",
    );
    assert!(
        std::env::var("HELM_SDK_LIB").is_ok(),
        "HELM_SDK_LIB is not set: run the tests with scripts/test.sh"
    );
    let run = Command::new(python)
        .arg(root().join("helm/check_chart.py"))
        .arg(out)
        .output()
        .expect("running helm/check_chart.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the chart did not validate:\n{text}");
    text
}

/// The case's rendered weir.toml with the pod's mount points moved under `case`: the
/// Secret's keys are files there, as Kubernetes mounts them.
fn local_config(case: &Path, tls: Option<(&Path, &Path)>) -> PathBuf {
    let secrets = case.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for key in [
        "admin-password",
        "admin-token",
        "read-token",
        "ingest-token",
    ] {
        let rendered = case.join(key);
        let value = std::fs::read(&rendered)
            // An existing Secret is the user's: stand one in.
            .unwrap_or_else(|_| format!("{key}-of-the-users-own-secret").into_bytes());
        std::fs::write(secrets.join(key), value).unwrap();
    }
    let mut text = std::fs::read_to_string(case.join("weir.toml"))
        .unwrap()
        .replace("/run/secrets/weir/", &format!("{}/", secrets.display()))
        .replace(
            "/etc/weir/init.sql",
            case.join("init.sql").to_str().unwrap(),
        );
    if let Some((cert, key)) = tls {
        text = text
            .replace("/run/tls/tls.crt", cert.to_str().unwrap())
            .replace("/run/tls/tls.key", key.to_str().unwrap());
    }
    let path = case.join("local.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn curl_status(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_validates_and_weir_runs_with_the_config_it_renders() {
    let out = tempfile::tempdir().unwrap();
    let report = check_chart(out.path());
    println!("{report}");
    let cases = [
        "defaults",
        "everything",
        "existing-secret",
        "cluster",
        "cluster-s3",
    ];
    for case in cases {
        assert!(
            report.contains(&format!("{case}: ")) && !report.contains("INVALID"),
            "{report}"
        );
    }
    assert!(
        report.contains("replicas=3 without shared state: refused"),
        "{report}"
    );

    // Every install's weir.toml is one Weir accepts, credentials resolved from the Secret;
    // a replica's name is its pod's (weir-1 here).
    let (cert, key) = common::self_signed_cert(out.path());
    for case in cases {
        let dir = out.path().join(case);
        let config = local_config(&dir, Some((&cert, &key)));
        // The pod's variables: the chart names the replica only when there are several.
        let pod: Vec<(String, String)> = match case {
            "cluster" | "cluster-s3" => {
                vec![("WEIR_CLUSTER__REPLICA".into(), "weir-1".into())]
            }
            _ => Vec::new(),
        };
        let loaded = weir_server::Config::load(Some(&config), pod)
            .unwrap_or_else(|e| panic!("{case}: Weir refuses the chart's weir.toml: {e}"));
        if case.starts_with("cluster") {
            let cluster = loaded.cluster().unwrap().expect("[cluster]");
            assert_eq!((cluster.ordinal, cluster.replicas), (1, 3));
            // On S3 (the command) or on the shared volume.
            assert_eq!(cluster.state_dir.is_none(), case == "cluster-s3");
            let sql = loaded.startup_sql().unwrap().expect("init.sql");
            assert!(sql.contains("brokers = 'kafka:9092'"), "{sql}");
        }
        let password = loaded.admin_password().unwrap();
        let expected = std::fs::read_to_string(dir.join("secrets/admin-password")).unwrap();
        assert_eq!(password.as_deref(), Some(expected.as_str()), "{case}");
        assert!(loaded.api_tokens().unwrap().is_some(), "{case}");
    }

    // The default install, run: the generated password and tokens are the credentials.
    let case = out.path().join("defaults");
    let config = local_config(&case, None);
    let secret = |key: &str| std::fs::read_to_string(case.join("secrets").join(key)).unwrap();
    std::fs::create_dir_all(case.join("run")).unwrap();
    let weir = Weir::start_with(
        &case.join("run"),
        &[("WEIR_CONFIG", config.to_str().unwrap())],
    );
    let base = format!("http://127.0.0.1:{}", weir.http);
    let deadline = Instant::now() + Duration::from_secs(60);
    while curl_status(&[&format!("{base}/health")]) != "200" {
        assert!(
            Instant::now() < deadline,
            "no /health:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl_status(&[&format!("{base}/ready")]), "200");
    let sql = format!("{base}/sql");
    assert_eq!(curl_status(&["-d", "SELECT 1", &sql]), "401");
    let admin = format!("Authorization: Bearer {}", secret("admin-token"));
    assert_eq!(curl_status(&["-H", &admin, "-d", "SELECT 1", &sql]), "200");
    let read = format!("Authorization: Bearer {}", secret("read-token"));
    assert_eq!(curl_status(&["-H", &read, "-d", "SELECT 1", &sql]), "200");
    assert_eq!(
        curl_status(&["-H", &read, "-d", "CREATE TABLE t (x INT)", &sql]),
        "403"
    );
    let conn = format!(
        "host=127.0.0.1 port={} user=weir dbname=weir password={}",
        weir.port,
        secret("admin-password")
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("the admin cannot log in: {e}\n{}", weir.log_text()));
    tokio::spawn(connection);
    let users: i64 = client
        .query_one("SELECT count(*)::BIGINT FROM weir.users WHERE admin", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1);
    let wrong = format!(
        "host=127.0.0.1 port={} user=weir dbname=weir password=wrong",
        weir.port
    );
    assert!(tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .is_err());
    drop(weir);

    // The replicas' install, run as pod weir-1 (the chart's broker name does not resolve
    // here; DDL does not need it): the seed's pipeline in init.sql is accepted on several
    // replicas, every view and the alert rule.
    let case = out.path().join("cluster");
    let local = local_config(&case, None);
    let shared = case.join("shared");
    let text = std::fs::read_to_string(&local)
        .unwrap()
        .replace("/var/lib/weir-shared", shared.to_str().unwrap());
    std::fs::write(&local, text).unwrap();
    std::fs::create_dir_all(case.join("run")).unwrap();
    let weir = Weir::start_with(
        &case.join("run"),
        &[
            ("WEIR_CONFIG", local.to_str().unwrap()),
            ("WEIR_CLUSTER__REPLICA", "weir-1"),
        ],
    );
    let password = std::fs::read_to_string(case.join("secrets/admin-password")).unwrap();
    let conn = format!(
        "host=127.0.0.1 port={} user=weir dbname=weir password={password}",
        weir.port
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok((client, connection)) =
            tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            break client;
        }
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let relations: Vec<String> = client
        .query(
            "SELECT name FROM weir.views UNION ALL SELECT name FROM weir.alert_rules ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        relations,
        ["error_burst", "kpi_1m", "kpi_1m_hop"],
        "{}",
        weir.log_text()
    );
    let status: String = client
        .query_one("SELECT status FROM weir.sources WHERE name = 'events'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(status.starts_with("sharded: "), "{status}");
}
