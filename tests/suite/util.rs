//! Running the `toolgate` binary as a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `toolgate` command with colour off, run from `dir`.
pub fn toolgate(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolgate"));
    command.current_dir(dir).env("NO_COLOR", "1");
    command
}

/// Runs a command with `input` on stdin.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Output {
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("toolgate starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("toolgate runs");
    writer.join().expect("writer");
    output
}

/// The lines of stdout, parsed as JSON.
pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

/// A scratch directory holding the given files.
pub fn scratch(files: &[(&str, &str)]) -> tempdir::TempDir {
    let dir = tempdir::TempDir::new();
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }
    dir
}

/// A minimal temporary directory, removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("toolgate-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            TempDir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An engine on in-memory state for a policy given as text.
pub fn engine(policy: &str) -> toolgate::engine::Engine {
    let source = toolgate::PolicySource { name: "p.yaml".into(), bytes: policy.as_bytes().to_vec() };
    let checked = toolgate::compile(vec![source], &toolgate::NoFiles);
    let errors: Vec<_> = checked.diagnostics.as_slice().iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    toolgate::engine::Engine::new(checked.policy.expect("compiles"), toolgate::state::State::in_memory())
}

/// A decide request given as JSON.
pub fn request(value: &serde_json::Value) -> toolgate::engine::Request {
    toolgate::protocol::decode::request_from_json(value).unwrap_or_else(|e| panic!("not a request: {e:?}"))
}

/// The example policies of the repository, compiled with their catalogs.
pub fn compile_examples() -> toolgate::CheckedPolicySet {
    let sources = toolgate::compiler::files::read_policies(&[root().join("policies")]).expect("policies");
    toolgate::compile(sources, &toolgate::DiskFiles).policy.expect("compiles")
}

/// The folders of `tests/fixtures/engine/`: a policy and its `*.test.yaml`
/// cases each, on decision semantics.
pub fn engine_fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/engine"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Small filesystems for disk-fault tests: a tmpfs that fills up, an ext4
/// on a loop device that can be frozen. Mounting needs root (the suite
/// runs as root in `.ci/run`); without it these tests fail, unless
/// `TOOLGATE_TESTS_WITHOUT_MOUNT=1` says to skip them.
pub mod mount {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A mounted filesystem, unmounted (lazily) on drop.
    pub struct Mount {
        path: PathBuf,
        image: Option<PathBuf>,
    }

    fn mounting_allowed() -> bool {
        if std::env::var_os("TOOLGATE_TESTS_WITHOUT_MOUNT").is_some_and(|v| v == "1") {
            eprintln!("skipped: TOOLGATE_TESTS_WITHOUT_MOUNT=1");
            return false;
        }
        true
    }

    fn run(program: &str, args: &[&str]) {
        let status = Command::new(program).args(args).status().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            status.success(),
            "{program} {args:?} failed (these tests need root; TOOLGATE_TESTS_WITHOUT_MOUNT=1 skips them)"
        );
    }

    impl Mount {
        /// A tmpfs of `mib` MiB at `path` (created); `None` if skipped.
        pub fn tmpfs(path: &Path, mib: u32) -> Option<Mount> {
            if !mounting_allowed() {
                return None;
            }
            std::fs::create_dir_all(path).expect("mount point");
            let size = format!("size={mib}m");
            run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &path.to_string_lossy()]);
            Some(Mount { path: path.to_owned(), image: None })
        }

        /// An ext4 filesystem of `mib` MiB on a loop device at `path`.
        pub fn ext4(path: &Path, mib: u32) -> Option<Mount> {
            if !mounting_allowed() {
                return None;
            }
            std::fs::create_dir_all(path).expect("mount point");
            let image = path.with_extension("img");
            let file = std::fs::File::create(&image).expect("image");
            file.set_len(u64::from(mib) << 20).expect("image size");
            run("mkfs.ext4", &["-q", &image.to_string_lossy()]);
            run("mount", &["-o", "loop", &image.to_string_lossy(), &path.to_string_lossy()]);
            Some(Mount { path: path.to_owned(), image: Some(image) })
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Freezes the filesystem: every write to it blocks until the guard
        /// is dropped. Drop the guard before anything that waits for a
        /// process writing there.
        pub fn freeze(&self) -> Frozen {
            run("fsfreeze", &["-f", &self.path.to_string_lossy()]);
            Frozen(self.path.clone())
        }

        /// Fills the filesystem with a file, until it is full.
        pub fn fill(&self) -> PathBuf {
            use std::io::Write;
            let filler = self.path.join("filler");
            let mut file = std::fs::File::create(&filler).expect("filler");
            let block = vec![0xA5u8; 64 << 10];
            while file.write_all(&block).is_ok() {}
            let _ = file.sync_all();
            filler
        }
    }

    impl Drop for Mount {
        fn drop(&mut self) {
            let path = self.path.to_string_lossy().into_owned();
            let _ = Command::new("fsfreeze").args(["-u", &path]).stderr(std::process::Stdio::null()).status();
            let _ = Command::new("umount").args(["-l", &path]).status();
            if let Some(image) = &self.image {
                let _ = std::fs::remove_file(image);
            }
        }
    }

    /// A frozen filesystem, thawed on drop.
    pub struct Frozen(PathBuf);

    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = Command::new("fsfreeze").args(["-u", &self.0.to_string_lossy()]).status();
        }
    }
}

/// A real `redis-server` (Debian's package; `.ci/run` installs it) on a
/// Unix socket of its own, stopped when dropped.
pub mod redis_server {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::tempdir::TempDir;

    pub struct RedisServer {
        child: Child,
        dir: TempDir,
        extra: Vec<String>,
    }

    impl RedisServer {
        /// Starts one with `extra` settings (`appendonly yes`, …); panics if
        /// it does not answer within 10 seconds.
        pub fn start(extra: &[&str]) -> RedisServer {
            let dir = TempDir::new();
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            let child = RedisServer::spawn(&dir, &extra);
            let server = RedisServer { child, dir, extra };
            server.wait_until_ready();
            server
        }

        /// Stops it (SIGKILL: what a crash looks like).
        pub fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        /// Starts it again on the same socket and directory (its append-only
        /// file, if any, is read back).
        pub fn start_again(&mut self) {
            self.stop();
            self.child = RedisServer::spawn(&self.dir, &self.extra);
            self.wait_until_ready();
        }

        fn spawn(dir: &TempDir, extra: &[String]) -> Child {
            let socket = dir.path().join("redis.sock");
            let mut command = Command::new("redis-server");
            command
                .args(["--port", "0", "--unixsocket"])
                .arg(&socket)
                .args(["--unixsocketperm", "700", "--dir"])
                .arg(dir.path())
                .args(["--save", "", "--appendonly", "no"]);
            for setting in extra {
                command.args(setting.split(' '));
            }
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (apt-get install redis-server; .ci/run installs it)")
        }

        fn wait_until_ready(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let ping = Command::new("redis-cli").arg("-s").arg(self.socket()).arg("ping").output();
                // With `requirepass`, a ping without the password is refused: up all the same.
                if ping.is_ok_and(|o| o.stdout.starts_with(b"PONG") || o.stdout.starts_with(b"NOAUTH")) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("redis-server did not start");
        }

        /// Its socket.
        pub fn socket(&self) -> PathBuf {
            self.dir.path().join("redis.sock")
        }

        /// Its address for toolgate.
        pub fn url(&self) -> String {
            format!("redis+unix://{}", self.socket().display())
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Certificates made with `openssl`: a CA, a server certificate for
/// 127.0.0.1 and a client certificate signed by it, and a second CA that
/// signed nothing here.
pub mod certificates {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::tempdir::TempDir;

    pub struct Pki {
        pub dir: TempDir,
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    }

    fn key_and_request(dir: &Path, name: &str, subject: &str) {
        let key = format!("{name}.key");
        let request = format!("{name}.csr");
        openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
        openssl(dir, &["req", "-new", "-key", &key, "-subj", subject, "-out", &request]);
    }

    impl Pki {
        pub fn make() -> Pki {
            let dir = TempDir::new();
            let at = dir.path();
            for ca in ["ca", "other-ca"] {
                openssl(
                    at,
                    &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &format!("{ca}.key")],
                );
                let subject = format!("/CN=toolgate test {ca}");
                openssl(
                    at,
                    &[
                        "req",
                        "-x509",
                        "-new",
                        "-key",
                        &format!("{ca}.key"),
                        "-days",
                        "2",
                        "-subj",
                        &subject,
                        "-out",
                        &format!("{ca}.crt"),
                    ],
                );
            }
            std::fs::write(at.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
                .expect("ext");
            std::fs::write(at.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
            // `other-server` is a server certificate another CA signed.
            let signed = [
                ("server", "/CN=localhost", "ca"),
                ("client", "/CN=toolgate-replica", "ca"),
                ("other-server", "/CN=localhost", "other-ca"),
            ];
            for (name, subject, ca) in signed {
                key_and_request(at, name, subject);
                let ext = if name == "client" { "client.ext" } else { "server.ext" };
                let (request, cert) = (format!("{name}.csr"), format!("{name}.crt"));
                let (ca_cert, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
                openssl(
                    at,
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &request,
                        "-CA",
                        &ca_cert,
                        "-CAkey",
                        &ca_key,
                        "-CAcreateserial",
                        "-days",
                        "2",
                        "-extfile",
                        ext,
                        "-out",
                        &cert,
                    ],
                );
            }
            // Both CAs in one file, for servers that trust either.
            let both = [at.join("ca.crt"), at.join("other-ca.crt")]
                .map(|path| std::fs::read_to_string(path).expect("ca"));
            std::fs::write(at.join("both-cas.crt"), both.concat()).expect("both CAs");
            // Private keys are secrets: toolgate reads only private ones.
            for key in ["ca.key", "other-ca.key", "server.key", "client.key", "other-server.key"] {
                let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
                std::fs::set_permissions(at.join(key), private).expect("chmod");
            }
            Pki { dir }
        }

        pub fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        pub fn arg(&self, name: &str) -> String {
            self.path(name).display().to_string()
        }
    }
}

/// A free loopback TCP port (free when asked; taken by whoever binds first).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}
