//! `toolgate proxy`: an MCP server behind the policy, on stdio.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use toolgate::engine::Engine;
use toolgate::proxy::calls::Caller;
use toolgate::proxy::gate::Gate;
use toolgate::proxy::upstream::Upstream;
use toolgate::proxy::{self, Ended};
use toolgate::server::{self, socket};
use toolgate::service::{Service, ServiceConfig, reload};
use toolgate::state::{State, StateConfig};

use super::serve::{AuditArgs, init_logging, open_audit};
use super::{Exit, output};

/// `proxy`'s resolved settings.
pub struct ProxyArgs {
    pub policies: Vec<PathBuf>,
    pub decision_socket: Option<PathBuf>,
    pub agent: String,
    pub server: Option<String>,
    pub session: Option<String>,
    pub principal: Option<Value>,
    pub context: Option<Value>,
    /// Where state lives (the directory or the Redis), defaults elsewhere.
    pub state: StateConfig,
    pub audit: Option<AuditArgs>,
    pub admin_socket: Option<PathBuf>,
    pub approval_ttl: Duration,
    pub decision_timeout: Duration,
    pub max_message_bytes: usize,
    pub grace: Duration,
    pub command: Vec<String>,
}

pub fn run(args: ProxyArgs) -> Exit {
    init_logging(super::LogFormat::Text);
    let result = match args.decision_socket.clone() {
        Some(socket) => {
            // The server's own deadline, plus a second for the socket.
            let gate = Gate::remote(socket, args.decision_timeout + Duration::from_secs(1));
            relay(args, gate, None)
        }
        None => match output::compile_or_report(&args.policies) {
            Ok(policy) => in_process(args, policy),
            Err(exit) => return exit,
        },
    };
    result.unwrap_or_else(|message| {
        output::error(&message);
        Exit::Usage
    })
}

/// Decides in this process: opens the state, the audit trail and the
/// admin socket.
fn in_process(args: ProxyArgs, policy: toolgate::compiler::CheckedPolicySet) -> Result<Exit, String> {
    if !policy.agent_names().any(|agent| agent == args.agent) {
        return Err(format!("no policy names the agent `{}`: every call would be denied", args.agent));
    }
    let mut admin_bound = match &args.admin_socket {
        Some(path) => Some(socket::bind(path, 0o600, None).map_err(|e| e.to_string())?),
        None => None,
    };
    let config = StateConfig {
        approval_ttl: args.approval_ttl,
        answer_within: args.decision_timeout,
        ..args.state.clone()
    };
    let state = State::open(&config).map_err(|e| e.to_string())?;
    let audit = open_audit(args.audit.as_ref(), Arc::clone(&state.clock))?;
    let engine = Engine::new(policy, state);
    let service_config = ServiceConfig {
        policies: args.policies.clone(),
        serving: true,
        log_decisions: false,
        decision_timeout: args.decision_timeout,
    };
    let service = Arc::new(Service::new(engine, service_config, audit));
    let admin = admin_bound.as_mut().and_then(|bound| bound.take_listener());
    let local = Local { service: Arc::clone(&service), admin };
    let exit = relay(args, Gate::in_process(Arc::clone(&service)), Some(local));
    if let Some(audit) = service.audit() {
        audit.close();
    }
    drop(admin_bound);
    exit
}

/// Starts the server and relays until the client or the server leaves.
fn relay(args: ProxyArgs, gate: Gate, mut local: Option<Local>) -> Result<Exit, String> {
    let session = match args.session {
        Some(session) => session,
        None => {
            let session = new_session_id()?;
            tracing::info!(%session, "no --session given: this proxy's session");
            session
        }
    };
    let caller = Caller {
        agent: args.agent,
        server: args.server,
        session,
        principal: args.principal,
        context: args.context,
    };
    let (command, command_args) = args.command.split_first().ok_or("no MCP server command after `--`")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let exit = runtime.block_on(async {
        let admin_server = match local.as_mut().and_then(|local| Some((local.admin.take()?, &local.service)))
        {
            Some((listener, service)) => Some(spawn_admin(listener, Arc::clone(service))?),
            None => None,
        };
        // The policy reloads when its files change, as for `serve`; a
        // policy with errors leaves the last good one deciding.
        let _watcher = match &local {
            Some(local) => Some(
                reload::watch(Arc::clone(&local.service), DEBOUNCE)
                    .map_err(|e| format!("cannot watch the policy files: {e}"))?,
            ),
            None => None,
        };
        let env = credential_scope(caller.server.as_deref(), &gate).await?;
        let mut upstream =
            Upstream::spawn(command, command_args, env.as_deref()).map_err(|e| e.to_string())?;
        let (server_in, server_out) = upstream.pipes().ok_or("the MCP server's pipes are missing")?;
        tracing::info!(server = %command, agent = %caller.agent, "relaying");
        let relayed = proxy::relay(
            caller,
            gate,
            proxy::Limits { max_message: args.max_message_bytes, drain: args.grace },
            tokio::io::BufReader::new(proxy::stdio::stdin()),
            proxy::stdio::stdout(),
            server_in,
            tokio::io::BufReader::new(server_out),
        );
        // A client that stops the proxy with a signal (as MCP clients do
        // after closing stdin) stops the server first.
        let (ended, status) = tokio::select! {
            ended = relayed => (ended, upstream.stop(args.grace).await),
            signal = stop_signal() => {
                tracing::info!(signal, "stopping the MCP server");
                (Ended::ClientClosed, upstream.terminate(args.grace.min(Duration::from_secs(1))).await)
            }
        };
        if let Some((stop, task)) = admin_server {
            let _ = stop.send(());
            let _ = task.await;
        }
        Ok::<_, String>(match ended {
            Ended::ClientClosed => Exit::Ok,
            Ended::UpstreamClosed => {
                let status = status.map_or_else(|| String::from("unknown status"), |s| s.to_string());
                output::error(&format!("the MCP server `{command}` exited ({status})"));
                Exit::Upstream
            }
        })
    });
    // The blocking read of stdin may never return (the client keeps it
    // open after the server died): do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    exit
}

/// Resolves on SIGTERM, SIGINT or SIGHUP (never, if they cannot be caught).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    }
}

type AdminTask = (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// What a proxy that decides in-process holds: its service, and the
/// admin socket's listener if it has one.
struct Local {
    service: Arc<Service>,
    admin: Option<std::os::unix::net::UnixListener>,
}

/// How long file changes settle before a reload.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Serves the admin socket (approvals, kills) until told to stop.
fn spawn_admin(
    listener: std::os::unix::net::UnixListener,
    service: Arc<Service>,
) -> Result<AdminTask, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?;
    let peers = server::AdminPeers { uids: vec![rustix::process::getuid().as_raw()], gids: Vec::new() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = server::Config { drain_timeout: Duration::from_secs(1), ..server::Config::default() };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        server::run(None, Some((listener, peers)), service, config, shutdown).await;
    });
    Ok((stop, task))
}

/// A fresh, unguessable session id.
fn new_session_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a session id: {e}"))?;
    Ok(bytes.iter().fold(String::from("proxy-"), |mut id, byte| {
        id.push_str(&format!("{byte:02x}"));
        id
    }))
}

/// `toolgate catalog`: prints or writes a live server's tools.
pub fn catalog(command: &[String], output: Option<&std::path::Path>, timeout: u64) -> Exit {
    let Some((program, args)) = command.split_first() else { return Exit::Usage };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error(&format!("cannot start the runtime: {error}"));
            return Exit::Usage;
        }
    };
    let fetched = runtime.block_on(proxy::catalog::fetch(program, args, Duration::from_secs(timeout)));
    runtime.shutdown_timeout(Duration::from_millis(100));
    let catalog = match fetched {
        Ok(catalog) => catalog,
        Err(error) => {
            output::error(&error.to_string());
            return Exit::Upstream;
        }
    };
    let mut text = serde_json::to_string_pretty(&catalog).unwrap_or_default();
    text.push('\n');
    let tools = catalog["tools"].as_array().map_or(0, Vec::len);
    match output {
        None => {
            print!("{text}");
            Exit::Ok
        }
        Some(path) => match toolgate::state::atomic_file::replace(path, text.as_bytes()) {
            Ok(()) => {
                eprintln!("wrote {tools} tools to {}", path.display());
                Exit::Ok
            }
            Err(error) => {
                output::error(&format!("cannot write {}: {error}", path.display()));
                Exit::Usage
            }
        },
    }
}

/// The environment variables the server may receive: the policy's
/// `servers.<name>.env`, or, when the policy does not scope the server,
/// all of the proxy's (said on stderr). A decision server that cannot be
/// asked stops the start: the server's credentials are not guessed.
async fn credential_scope(server: Option<&str>, gate: &Gate) -> Result<Option<Vec<String>>, String> {
    let Some(server) = server else {
        tracing::warn!("no --server: the MCP server receives all of this proxy's environment");
        return Ok(None);
    };
    let answer = gate.ask(&serde_json::json!({"id": 0, "op": "scope", "server": server})).await;
    if let Some(error) = answer.get("error") {
        return Err(format!(
            "cannot learn what the MCP server `{server}` may receive from the policy: {error}"
        ));
    }
    match answer.pointer("/scope/env").and_then(serde_json::Value::as_array) {
        Some(names) => {
            let names: Vec<String> =
                names.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect();
            tracing::info!(server, env = ?names, "the MCP server receives only these environment variables");
            Ok(Some(names))
        }
        None => {
            tracing::warn!(
                server,
                "the policy does not scope this server's environment (`servers`): it receives all of this proxy's"
            );
            Ok(None)
        }
    }
}
