//! `toolgate serve`: the decision server on a Unix socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toolgate::audit::{AuditKey, Sealer};
use toolgate::engine::Engine;
use toolgate::server::{self, socket};
use toolgate::service::{Service, ServiceConfig, reload};
use toolgate::state::{State, StateConfig};

use super::{Exit, output};

/// How long file changes settle before a reload.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// `serve`'s resolved settings.
pub struct ServeArgs {
    pub server: server::Config,
    pub service: ServiceConfig,
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<String>,
    pub admin_socket_mode: u32,
    pub admin_socket_group: Option<String>,
    pub watch: bool,
    pub workers: usize,
    pub audit: Option<AuditArgs>,
    /// Where state lives (the directory or the Redis), defaults elsewhere.
    pub state: StateConfig,
    pub admin_socket: Option<PathBuf>,
    pub admin_uids: Vec<u32>,
    pub admin_gids: Vec<u32>,
    pub approval_ttl: Duration,
    pub sessions: toolgate::state::SessionLimits,
    pub approvals: toolgate::state::ApprovalLimits,
    /// The console's address and accounts file.
    pub console: Option<(std::net::SocketAddr, PathBuf)>,
    /// The console's TLS certificate chain and key.
    pub console_tls: Option<(PathBuf, PathBuf)>,
    /// `Host` values the console answers besides its own.
    pub console_hosts: Vec<String>,
    /// The metrics endpoint's address.
    pub metrics: Option<std::net::SocketAddr>,
    /// The approval notifications' settings file.
    pub notify: Option<PathBuf>,
    pub log_format: super::LogFormat,
}

/// The HTTP listeners beside the sockets: the console and the metrics.
struct Http {
    console: Option<(std::net::TcpListener, toolgate::console::ConsoleConfig)>,
    metrics: Option<std::net::TcpListener>,
    notify: Option<toolgate::console::notify::NotifyConfig>,
}

impl Http {
    /// Binds the listeners and reads the console's accounts: any problem
    /// stops the server before it serves.
    fn bind(args: &ServeArgs) -> Result<Http, String> {
        let console = match &args.console {
            Some((address, accounts)) => {
                let tls = match &args.console_tls {
                    Some((cert, key)) => Some(toolgate::console::tls::acceptor(cert, key)?),
                    None => None,
                };
                if tls.is_none() && !address.ip().is_loopback() {
                    return Err(format!(
                        "--console {address}: without TLS the console listens on loopback only (127.0.0.1 or [::1]); give --console-tls-cert and --console-tls-key to serve it elsewhere"
                    ));
                }
                let accounts =
                    toolgate::console::accounts::AccountBook::open(accounts).map_err(|e| e.to_string())?;
                let listener = std::net::TcpListener::bind(address)
                    .map_err(|e| format!("cannot listen on {address} for the console: {e}"))?;
                let hosts = args.console_hosts.clone();
                let trail = match &args.audit {
                    Some(audit) => Some(toolgate::console::Trail {
                        path: audit.path.clone(),
                        keys: match &audit.key {
                            Some(key) => vec![AuditKey::load(key).map_err(|e| e.to_string())?],
                            None => Vec::new(),
                        },
                    }),
                    None => None,
                };
                Some((listener, toolgate::console::ConsoleConfig { accounts, tls, hosts, trail }))
            }
            None => None,
        };
        let metrics = match args.metrics {
            Some(address) => Some(
                std::net::TcpListener::bind(address)
                    .map_err(|e| format!("cannot listen on {address} for the metrics: {e}"))?,
            ),
            None => None,
        };
        let notify = match &args.notify {
            Some(path) => Some(toolgate::console::notify::NotifyConfig::read(path)?),
            None => None,
        };
        Ok(Http { console, metrics, notify })
    }

    /// Starts serving on the runtime: the tasks, to be aborted when the server stops.
    fn start(self, service: &Arc<Service>) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
        let mut tasks = Vec::new();
        let tokio_listener = |listener: std::net::TcpListener| {
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())
        };
        if let Some((listener, config)) = self.console {
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            let listener = tokio_listener(listener)?;
            let service = Arc::clone(service);
            tasks.push(tokio::spawn(async move {
                tracing::info!(%address, "console listening");
                let stopped =
                    toolgate::console::serve(listener, service, config, std::future::pending()).await;
                if let Err(error) = stopped {
                    tracing::error!(%error, "the console stopped");
                }
            }));
        }
        if let Some(listener) = self.metrics {
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            let listener = tokio_listener(listener)?;
            let service = Arc::clone(service);
            tasks.push(tokio::spawn(async move {
                tracing::info!(%address, "metrics listening");
                let stopped =
                    toolgate::console::metrics::serve(listener, service, std::future::pending()).await;
                if let Err(error) = stopped {
                    tracing::error!(%error, "the metrics endpoint stopped");
                }
            }));
        }
        if let Some(config) = self.notify {
            tasks.push(toolgate::console::notify::start(service, config));
        }
        Ok(tasks)
    }
}

/// `toolgate hash-password`: the password is the first line of stdin.
pub fn hash_password() -> Exit {
    let mut line = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut line) {
        output::error(&format!("cannot read the password from stdin: {error}"));
        return Exit::Usage;
    }
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        output::error("give the password on stdin (e.g. `toolgate hash-password < file`); it is empty");
        return Exit::Usage;
    }
    if password.len() > toolgate::console::accounts::MAX_PASSWORD_BYTES {
        output::error(&format!(
            "the password is longer than {} bytes",
            toolgate::console::accounts::MAX_PASSWORD_BYTES
        ));
        return Exit::Usage;
    }
    match toolgate::console::accounts::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            Exit::Ok
        }
        Err(error) => {
            output::error(&format!("cannot hash the password: {error}"));
            Exit::Usage
        }
    }
}

pub struct AuditArgs {
    pub path: PathBuf,
    pub rotate_bytes: Option<u64>,
    pub key: Option<PathBuf>,
    pub sync: toolgate::audit::Sync,
}

/// Descriptors kept free of decision connections: the admin socket's
/// connections, the state store, the audit trail, the policy watcher.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// How many decision connections fit in the open-file limit, after raising
/// the soft limit to the hard one and keeping [`RESERVED_DESCRIPTORS`] and
/// the `http` connections of the console and the metrics listener: the
/// default for `--max-connections`, and its ceiling (a connection beyond
/// the descriptors would leave the kill switch unable to accept).
pub fn connection_budget(asked: Option<usize>, http: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let open_files = limit.current.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let reserved = RESERVED_DESCRIPTORS + http;
    let budget = open_files.saturating_sub(reserved).max(1);
    match asked {
        None => budget.min(DEFAULT_MAX_CONNECTIONS),
        Some(asked) if asked > budget => {
            eprintln!(
                "warning: --max-connections {asked} is more than the {open_files} open files allow with {reserved} kept for the admin socket, state, trail, console and metrics; serving at most {budget}"
            );
            budget
        }
        Some(asked) => asked.max(1),
    }
}

/// The default ceiling on decision connections when the open-file limit
/// allows more: each connection holds its buffers (about 40 KiB idle).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Half the cores, at least one: gateways on the same machine need the rest
/// (the book's performance chapter has the measurements).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

pub fn run(args: ServeArgs) -> Exit {
    init_logging(args.log_format);
    let policy = match output::compile_or_report(&args.service.policies) {
        Ok(policy) => policy,
        Err(exit) => return exit,
    };
    match start(args, policy) {
        Ok(()) => Exit::Ok,
        Err(message) => {
            output::error(&message);
            Exit::Usage
        }
    }
}

/// Binds the sockets, opens state and audit trail, and serves until a signal.
fn start(args: ServeArgs, policy: toolgate::compiler::CheckedPolicySet) -> Result<(), String> {
    // Sockets first, while this is the only thread: binding sets the
    // process umask. The admin socket first, so that a connectable decision
    // socket means the server is fully ready.
    let group = |name: &Option<String>| match name {
        Some(name) => server::peer::group_id(name).map(Some).ok_or_else(|| format!("no group `{name}`")),
        None => Ok(None),
    };
    let mut admin_bound = match &args.admin_socket {
        Some(path) => Some(
            socket::bind(path, args.admin_socket_mode, group(&args.admin_socket_group)?)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let mut bound = socket::bind(&args.socket, args.socket_mode, group(&args.socket_group)?)
        .map_err(|e| e.to_string())?;
    let listener = bound.take_listener().ok_or("the socket was already taken")?;
    let http = Http::bind(&args)?;
    let mut admin_uids = args.admin_uids.clone();
    admin_uids.push(rustix::process::getuid().as_raw());
    let allowed = server::AdminPeers { uids: admin_uids, gids: args.admin_gids.clone() };
    let admin = admin_bound.as_mut().and_then(|b| b.take_listener()).map(|l| (l, allowed));

    let config = StateConfig {
        approval_ttl: args.approval_ttl,
        sessions: args.sessions,
        approvals: args.approvals,
        answer_within: args.service.decision_timeout,
        ..args.state.clone()
    };
    let state = State::open(&config).map_err(|e| e.to_string())?;
    let clock = Arc::clone(&state.clock);
    let engine = Engine::new(policy, state);
    let audit = open_audit(args.audit.as_ref(), clock)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let service = Arc::new(Service::new(engine, args.service, audit));
    let path = bound.path().to_path_buf();
    let result = runtime.block_on(async {
        let http = http.start(&service)?;
        let result = serve(listener, admin, Arc::clone(&service), args.server, args.watch, path).await;
        for task in http {
            task.abort();
        }
        result
    });
    drop(runtime);
    // The trail is synced and closed before the sockets disappear.
    if let Some(audit) = service.audit() {
        audit.close();
    }
    drop(bound);
    drop(admin_bound);
    result
}

/// Opens the audit trail, if one is asked for, behind its writer thread.
pub(super) fn open_audit(
    audit: Option<&AuditArgs>,
    clock: Arc<dyn toolgate::state::Clock>,
) -> Result<Option<toolgate::audit::AuditSink>, String> {
    let Some(audit) = audit else { return Ok(None) };
    let sealer = match &audit.key {
        Some(key) => Sealer::Keyed(AuditKey::load(key).map_err(|e| e.to_string())?),
        None => Sealer::Plain,
    };
    let writer = toolgate::audit::AuditWriter::open(&audit.path, audit.rotate_bytes, sealer)
        .map_err(|e| format!("cannot open the audit trail `{}`: {e}", audit.path.display()))?;
    Ok(Some(toolgate::audit::AuditSink::start(writer, audit.sync, clock)))
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    admin: Option<(std::os::unix::net::UnixListener, server::AdminPeers)>,
    service: Arc<Service>,
    config: server::Config,
    watch: bool,
    path: PathBuf,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?;
    let admin = match admin {
        Some((listener, peers)) => {
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some((tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?, peers))
        }
        None => None,
    };
    let _watcher = if watch {
        Some(
            reload::watch(Arc::clone(&service), DEBOUNCE)
                .map_err(|e| format!("cannot watch the policy files: {e}"))?,
        )
    } else {
        None
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let on_hangup = Arc::clone(&service);
    let hangups = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let _ = on_hangup.reload(reload::Trigger::Signal).await;
        }
    });
    tracing::info!(socket = %path.display(), policy = %service.engine().policy_hash(), "serving");
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    server::run(Some(listener), admin, service, config, shutdown).await;
    hangups.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Logs to stderr, as text or one JSON object a line; `TOOLGATE_LOG`
/// filters (`info` by default).
pub(super) fn init_logging(format: super::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOOLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        super::LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        super::LogFormat::Text => builder
            .with_ansi(output::stderr_color() == toolgate::diagnostic::render::Color::Always)
            .try_init(),
    };
}
