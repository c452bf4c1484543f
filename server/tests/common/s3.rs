//! moto's S3-compatible server (from PyPI; scripts/test.sh installs it) for tests of
//! object storage.

use std::time::{Duration, Instant};

/// moto's S3-compatible server on a free port, stopped on drop.
pub struct S3Server {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl S3Server {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server is missing: run the tests with scripts/test.sh (it installs moto[server] from PyPI)");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, addr }
    }

    /// Keys under `prefix` in `bucket` ending in `suffix`.
    pub async fn keys_ending(&self, bucket: &str, prefix: &str, suffix: &str) -> usize {
        let (status, body) = super::http_text(
            self.addr,
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body.matches(&format!("{suffix}</Key>")).count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
