//! A `redis-server` for the benchmarks (Debian's package), on a Unix
//! socket in a directory of the benchmark's, without persistence.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts one on `dir/redis.sock`; panics if it does not answer within 10 s.
pub fn redis_server(dir: &Path) -> Child {
    let socket = dir.join("redis.sock");
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    for _ in 0..500 {
        let ping = Command::new("redis-cli").arg("-s").arg(&socket).arg("ping").output();
        if ping.is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start");
}
