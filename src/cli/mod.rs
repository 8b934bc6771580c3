//! Command-line parsing and dispatch. Output format and exit codes are
//! chosen here, once.

mod admin;
mod audit;
mod check;
mod detectors;
mod diff;
mod eval;
mod export;
mod lint;
mod output;
mod proxy;
mod query;
mod serve;
mod test;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// How a command ended: every command's exit status comes from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success (0).
    Ok,
    /// The policy set has errors, or warnings under `--deny-warnings` (1).
    Invalid,
    /// Bad usage, or a file or socket could not be read (2).
    Usage,
    /// `lint` found something, a `test` case failed or coverage fell short,
    /// or `diff --fail-on-widen` found a widening (3).
    Findings,
    /// `query`: a request was denied or answered with an error (1).
    Denied,
    /// `query`: a request needs approval and none was denied (3).
    ApprovalRequired,
    /// `proxy`: the MCP server could not be started, or exited first (4).
    Upstream,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Invalid | Exit::Denied => 1,
            Exit::Usage => 2,
            Exit::Findings | Exit::ApprovalRequired => 3,
            Exit::Upstream => 4,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// toolgate: policy compiler and decision engine for AI agents' tool calls.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files and report every error and warning.
    Check(CheckArgs),
    /// Decide JSON Lines requests from stdin, one JSON response per line on stdout.
    Eval(EvalArgs),
    /// Run policy tests (*.test.yaml) and report rule coverage; exit 3 if any fail.
    Test(TestArgs),
    /// Check policies and flag risky ones; exit 3 on findings.
    Lint(LintArgs),
    /// Compare what two policy sets decide: which calls a change widens or narrows.
    Diff(DiffArgs),
    /// List the built-in output rules (credentials, personal data, prompt injection).
    Detectors(DetectorsArgs),
    /// Hash a console password (read from stdin) for the accounts file of `serve --console`.
    HashPassword,
    /// Translate a policy set into another policy language (Rego).
    Export(ExportArgs),
    /// Serve decisions on a Unix socket, reloading the policy when it changes.
    Serve(Box<ServeArgs>),
    /// Ask a running server; exit 0 if allowed, 1 if denied, 3 if approval is required.
    Query(QueryArgs),
    /// Run an MCP server behind the policy: launched by an MCP client in the server's place,
    /// relay its stdio, deciding every tool call; exit 4 if the server exits first.
    Proxy(Box<ProxyArgs>),
    /// Fetch a live MCP server's tools (every page of `tools/list`) as a catalog file;
    /// exit 4 if the server cannot be started or does not answer.
    Catalog(CatalogArgs),
    /// Work with audit trails.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Kill a session, an agent, or everything: their calls are denied until revived.
    Kill(KillArgs),
    /// Revive what `kill` stopped.
    Revive(ScopeArgs),
    /// List what is killed.
    Kills(AdminSocketArg),
    /// List the approvals waiting for a decision.
    Approvals(AdminSocketArg),
    /// Grant an approval: the gated call it is bound to may then be made once.
    Approve(DecideArgs),
    /// Reject an approval.
    Reject(DecideArgs),
}

#[derive(Debug, clap::Args)]
struct DecideArgs {
    #[command(flatten)]
    socket: AdminSocketArg,
    /// The approval id (from the `require_approval` answer or `toolgate approvals`).
    approval: String,
    /// The approver you act as; optional (who you are is what the kernel reports, and you
    /// must be a member of the gate's approver), and if given must be the gate's `approver`.
    #[arg(long = "as")]
    by: Option<String>,
    /// Why you decide so; recorded in the audit trail with the decision.
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Debug, clap::Args)]
struct AdminSocketArg {
    /// Path of the server's admin socket.
    #[arg(long)]
    admin_socket: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ScopeArgs {
    #[command(flatten)]
    socket: AdminSocketArg,
    /// Every agent and session.
    #[arg(long, conflicts_with_all = ["agent", "session"])]
    all: bool,
    /// One agent (all its sessions, unless --session is given).
    #[arg(long, required_unless_present = "all")]
    agent: Option<String>,
    /// One session of the agent.
    #[arg(long, requires = "agent")]
    session: Option<String>,
}

#[derive(Debug, clap::Args)]
struct KillArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Why (recorded with the kill, shown in every denial).
    #[arg(long)]
    reason: String,
    /// Who you are (recorded with your user id).
    #[arg(long = "as")]
    by: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit trail's hash chain; report the first broken record.
    Verify(VerifyArgs),
    /// Write a new random audit key to a new file (mode 0600).
    NewKey(NewKeyArgs),
    /// Move a stopped server's keyed trail to a new key (the old key vouches for the change).
    RotateKey(RotateKeyArgs),
}

#[derive(Debug, clap::Args)]
struct NewKeyArgs {
    /// The file to create; never overwritten.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RotateKeyArgs {
    /// The trail (the server writing it must be stopped).
    trail: PathBuf,
    /// The key the trail is sealed with now.
    #[arg(long)]
    key: PathBuf,
    /// The key to seal it with from now on (from `toolgate audit new-key`).
    #[arg(long)]
    new_key: PathBuf,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The trail: one path (its rotated files are found beside it), or several files, oldest first.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Accept a trail that starts mid-chain (a rotated file on its own; one path is then one file).
    #[arg(long)]
    partial: bool,
    /// The hash the trail must end with (from `status`), to detect records removed from its end.
    #[arg(long)]
    head: Option<String>,
    /// The key of a keyed trail; repeat for each key it was rotated through.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
}

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people, with source snippets (colour unless NO_COLOR is set or output is not a terminal).
    #[default]
    Human,
    /// A JSON array of diagnostics on stdout.
    Json,
    /// A SARIF 2.1.0 log on stdout, for code-scanning upload.
    Sarif,
    /// GitHub Actions workflow commands on stdout: annotations on the pull request.
    Github,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Policy files or directories (all *.yaml/*.yml below, except *.test.yaml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Policy files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: export::ExportFormat,
}

#[derive(Debug, clap::Args)]
struct DiffArgs {
    /// The policy before: a file, a directory, or `REV:PATH` (a git revision of one).
    old: String,
    /// The policy after, likewise.
    new: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: diff::DiffFormat,
    /// Exit 3 if any change widens what an agent may do.
    #[arg(long)]
    fail_on_widen: bool,
}

#[derive(Debug, clap::Args)]
struct LintArgs {
    /// Policy files or directories (all *.yaml/*.yml below, except *.test.yaml).
    #[arg(required_unless_present = "explain")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Exit 0 even with findings (still 1 if the policy does not compile).
    #[arg(long)]
    exit_zero: bool,
    /// Print a rule's documentation, or list every rule.
    #[arg(long, value_name = "RULE", num_args = 0..=1, default_missing_value = "")]
    explain: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DetectorsArgs {
    /// Print JSON (with each rule's keywords, pattern and examples) instead of a Markdown table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    /// Policy files or directories; test files (*.test.yaml) are found in them too.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: test::TestFormat,
    /// Fail (exit 3) if fewer than this percentage of the policy's rules decided a case.
    #[arg(long)]
    min_coverage: Option<f64>,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Policy file or directory; may be given more than once.
    #[arg(long = "policy", required = true)]
    policies: Vec<PathBuf>,
    /// The longest request line accepted, in bytes.
    #[arg(long, default_value_t = eval::DEFAULT_MAX_LINE)]
    max_line_bytes: usize,
    /// Who decides: toolgate's engine, or regorus running the policy exported as Rego.
    #[arg(long, value_enum, default_value_t)]
    engine: eval::EvalEngine,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Policy file or directory; may be given more than once.
    #[arg(long = "policy", required = true)]
    policies: Vec<PathBuf>,
    /// Path of the Unix socket to listen on.
    #[arg(long)]
    socket: PathBuf,
    /// Permissions of the socket, in octal (e.g. 660 to let the group connect).
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    socket_mode: u32,
    /// The group that owns the socket (a name or id; this user must be in it), for `--socket-mode 660`.
    #[arg(long)]
    socket_group: Option<String>,
    /// The most decision connections served at once; more are refused with an error line
    /// [default: 4096, or fewer if the open-file limit (raised to its hard limit) less 64
    /// descriptors kept for the admin socket, the state store and the audit trail (and 128
    /// for `--console`, 16 for `--metrics`) is lower].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a connection may go without sending a complete line.
    #[arg(long, default_value_t = 30)]
    idle_timeout: u64,
    /// The longest request line accepted, in bytes.
    #[arg(long, default_value_t = eval::DEFAULT_MAX_LINE)]
    max_line_bytes: usize,
    /// Log every decision (off by default).
    #[arg(long)]
    log_decisions: bool,
    /// Do not watch the policy files; reload only on SIGHUP or the `reload` op.
    #[arg(long)]
    no_watch: bool,
    /// Server threads [default: half the cores, at least 1; gateways on the
    /// same machine need the rest].
    #[arg(long)]
    workers: Option<usize>,
    /// Keep session counters, kills and approvals in this directory (created if missing, private), durable
    /// across crashes, or on this Redis shared by every replica (`redis://HOST:PORT/DB`,
    /// `rediss://…` over TLS, `redis+unix:///path/redis.sock`, the primary Redis Sentinel names,
    /// `redis+sentinel://HOST:PORT,…/SERVICE`, `rediss+sentinel://…` over TLS); without it they are in memory and
    /// lost when the server stops.
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    redis: RedisFlags,
    /// Also listen on this admin socket: kills, revivals and reloads for operators,
    /// approvals for the members of the approvers the policy declares.
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Permissions of the admin socket, in octal (660 lets its group connect: approvers
    /// who are not the server's user need that, with `--admin-socket-group`).
    #[arg(long, default_value = "600", value_parser = parse_mode, requires = "admin_socket")]
    admin_socket_mode: u32,
    /// The group that owns the admin socket (a name or id; this user must be in it).
    #[arg(long, requires = "admin_socket")]
    admin_socket_group: Option<String>,
    /// A user id that operates the server on the admin socket, besides its own (and root); repeatable.
    #[arg(long = "admin-uid", requires = "admin_socket")]
    admin_uids: Vec<u32>,
    /// A group id whose members operate the server on the admin socket (primary or
    /// supplementary membership); repeatable. They must be able to connect: see
    /// `--admin-socket-mode`.
    #[arg(long = "admin-gid", requires = "admin_socket")]
    admin_gids: Vec<u32>,
    /// Seconds an approval stays valid after the `require_approval` answer that opened it
    /// (1 to 2592000, 30 days).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    approval_ttl: u64,
    /// The most approvals one agent may have waiting for an approver; a gated call beyond is
    /// denied `approval_unavailable` until some are decided or expire.
    #[arg(long, default_value_t = toolgate::state::approval::MAX_PENDING_PER_AGENT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    max_pending_per_agent: usize,
    /// The most approvals one session of an agent may have waiting.
    #[arg(long, default_value_t = toolgate::state::approval::MAX_PENDING_PER_SESSION, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    max_pending_per_session: usize,
    /// Seconds a session may go without a call before its counters are dropped (its
    /// per-session caps start again): 1 to 31536000 (a year).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    session_idle: u64,
    /// The most live sessions (an agent's session id; for rate limits alone, the agent):
    /// a call that would open one more is denied `session_limit` until idle ones expire.
    /// On Redis, the bound is per agent.
    #[arg(long, default_value_t = toolgate::state::session::DEFAULT_MAX_SESSIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    max_sessions: usize,
    /// Milliseconds a decision may wait for the state store or the audit trail (a slow or
    /// frozen disk) before it is denied `decision_timeout`: 1 to 60000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    decision_timeout: u64,
    /// Append every decision, refused line and reload to this hash-chained audit trail.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Rotate the audit trail when it reaches this many bytes (the chain continues).
    #[arg(long, requires = "audit")]
    audit_rotate_bytes: Option<u64>,
    /// Key the audit trail's chain (HMAC-SHA-256) with the key in this file: without the
    /// key, nobody can forge a record or recompute the chain after an edit.
    #[arg(long, requires = "audit")]
    audit_key: Option<PathBuf>,
    /// When audit records reach the disk: `always` (fsync before answering) or `os`
    /// (written to the OS before answering; survives a crash of toolgate, not of the machine).
    #[arg(long, value_enum, default_value_t = AuditSync::Always, requires = "audit")]
    audit_sync: AuditSync,
    /// Serve the approvals console (a web page for approvers and operators) on this
    /// address, e.g. 127.0.0.1:8080: loopback only, unless served over TLS
    /// (`--console-tls-cert`). Needs `--console-accounts`.
    #[arg(long, requires = "console_accounts")]
    console: Option<SocketAddr>,
    /// Serve the console over TLS with this PEM certificate chain (the server's first).
    #[arg(long, requires_all = ["console", "console_tls_key"])]
    console_tls_cert: Option<PathBuf>,
    /// A `Host` the console answers besides its own address, as a reverse proxy in front of
    /// a loopback console forwards it (e.g. `toolgate.example.com`); repeatable. Others are
    /// refused (421), against DNS rebinding.
    #[arg(long = "console-host", requires = "console")]
    console_hosts: Vec<String>,
    /// The PEM private key of `--console-tls-cert`.
    #[arg(long, requires = "console_tls_cert")]
    console_tls_key: Option<PathBuf>,
    /// The console's accounts (YAML: names, password hashes from `toolgate hash-password`,
    /// groups, operator); read again when it changes.
    #[arg(long, requires = "console")]
    console_accounts: Option<PathBuf>,
    /// Tell approvers when an approval waits for them: webhooks per approver (JSON or
    /// Slack), with links to the console, from this file (YAML: console, webhooks, default).
    #[arg(long)]
    notify: Option<PathBuf>,
    /// Serve Prometheus metrics at `/metrics` on this address, e.g. 127.0.0.1:9464
    /// (no sign-in: keep it on loopback or a private network).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// How the server logs to stderr: `text` for people, `json` (one object per line) for
    /// log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How to reach a Redis named by `--state`.
#[derive(Debug, clap::Args)]
struct RedisFlags {
    /// The first part of every Redis key: deployments sharing one Redis under different
    /// namespaces share no caps, kills or approvals (letters, digits, `_`, `-`, `.`).
    #[arg(long, default_value = toolgate::state::redis::link::DEFAULT_NAMESPACE)]
    redis_namespace: String,
    /// Verify a `rediss://` server's certificate (or a `rediss+sentinel://` sentinel's and
    /// node's) against the PEM certificates in this file instead of the system's.
    #[arg(long)]
    redis_ca: Option<PathBuf>,
    /// Present this PEM client certificate to a `rediss://` server (or sentinel) that asks for
    /// one.
    #[arg(long, requires = "redis_key")]
    redis_cert: Option<PathBuf>,
    /// The PEM private key of `--redis-cert`.
    #[arg(long, requires = "redis_cert")]
    redis_key: Option<PathBuf>,
    /// Read the Redis password from the first line of this file (instead of from the URL,
    /// where every user of the machine can see it).
    #[arg(long)]
    redis_password_file: Option<PathBuf>,
    /// Read the password the sentinels ask for (`requirepass` in `sentinel.conf`) from the
    /// first line of this file; the URL's password and --redis-password-file are the nodes'.
    #[arg(long)]
    redis_sentinel_password_file: Option<PathBuf>,
    /// Count a redemption of an approval, a kill or a console sign-out only once this many of
    /// Redis's own replicas have it (Redis `WAIT`, within --decision-timeout), so that a
    /// failover cannot lose it: an unconfirmed redemption is denied, an unconfirmed kill or
    /// sign-out reported. 0 to 16.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    redis_replicas: u32,
    /// Seconds to wait for Redis at start (it may be starting too): 0 to 600.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    redis_wait: u64,
}

impl RedisFlags {
    /// Where state lives: `--state`, with these flags for a Redis. A flag
    /// that only a Redis can use, given without one, is an error.
    fn state(self, state: Option<&std::path::Path>) -> Result<toolgate::state::StateConfig, String> {
        let mut config = toolgate::state::StateConfig::at(state);
        let Some(redis) = config.redis.as_mut() else {
            let given = [
                ("--redis-ca", self.redis_ca.is_some()),
                ("--redis-cert", self.redis_cert.is_some()),
                ("--redis-password-file", self.redis_password_file.is_some()),
                ("--redis-sentinel-password-file", self.redis_sentinel_password_file.is_some()),
                ("--redis-replicas", self.redis_replicas > 0),
                (
                    "--redis-namespace",
                    self.redis_namespace != toolgate::state::redis::link::DEFAULT_NAMESPACE,
                ),
            ];
            return match given.iter().find(|(_, given)| *given) {
                Some(("--redis-sentinel-password-file", _)) => Err(String::from(
                    "--redis-sentinel-password-file needs Redis Sentinel: `--state redis+sentinel://…` or `rediss+sentinel://…`",
                )),
                Some((flag, _)) => Err(format!("{flag} needs a Redis: `--state redis://…` or `rediss://…`")),
                None => Ok(config),
            };
        };
        toolgate::state::redis::address::check_namespace(&self.redis_namespace)?;
        redis.namespace = self.redis_namespace;
        redis.ca = self.redis_ca;
        redis.client_certificate = self.redis_cert.zip(self.redis_key);
        redis.password_file = self.redis_password_file;
        redis.sentinel_password_file = self.redis_sentinel_password_file;
        redis.start_wait = std::time::Duration::from_secs(self.redis_wait);
        redis.replicas = self.redis_replicas;
        Ok(config)
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// Policy file or directory; may be given more than once.
    #[arg(long = "policy", required_unless_present = "decision_socket")]
    policies: Vec<PathBuf>,
    /// Decide through the `toolgate serve` listening on this socket (its policy, counters,
    /// approvals, kills and audit trail, shared by every proxy that uses it) instead of in
    /// this process.
    #[arg(long, conflicts_with_all = ["policies", "state", "audit", "admin_socket"])]
    decision_socket: Option<PathBuf>,
    /// The agent whose policy decides the calls.
    #[arg(long)]
    agent: String,
    /// The server's name in the policy: tool `t` is decided as `NAME/t` (the client keeps
    /// seeing `t`).
    #[arg(long)]
    server: Option<String>,
    /// The toolgate session for caps and approvals [default: a new random id, logged at start].
    #[arg(long)]
    session: Option<String>,
    /// Who the agent acts for, as a JSON object (a request's `principal`).
    #[arg(long)]
    principal: Option<String>,
    /// Anything else the policy may read, as a JSON object (a request's `context`).
    #[arg(long)]
    context: Option<String>,
    /// Keep session counters, kills and approvals in this directory, durable across crashes, or on
    /// this Redis shared with other proxies and servers (`redis://…`, `rediss://…`, `redis+unix://…`,
    /// `redis+sentinel://HOST:PORT,…/SERVICE`, `rediss+sentinel://…`).
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    redis: RedisFlags,
    /// Append every decision and outcome to this hash-chained audit trail.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Key the audit trail's chain with the key in this file.
    #[arg(long, requires = "audit")]
    audit_key: Option<PathBuf>,
    /// When audit records reach the disk: `always` (fsync before answering) or `os`.
    #[arg(long, value_enum, default_value_t = AuditSync::Always, requires = "audit")]
    audit_sync: AuditSync,
    /// Listen on this admin socket: approvals (for the policy's approvers), kills, revivals.
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Seconds an approval stays valid after the call that opened it.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    approval_ttl: u64,
    /// Milliseconds a decision may wait for the state store or the audit trail.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    decision_timeout: u64,
    /// The longest message relayed in either direction, in bytes.
    #[arg(long, default_value_t = toolgate::proxy::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Seconds the server gets to exit after its stdin closes, and again after SIGTERM.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    shutdown_grace: u64,
    /// The MCP server's command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct CatalogArgs {
    /// Write the catalog to this file (atomically) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Seconds the server has to start and list its tools.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// The MCP server's command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// The choices of `--audit-sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AuditSync {
    /// fsync before answering.
    Always,
    /// Written to the operating system before answering.
    Os,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// Path of the server's Unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// Request lines (JSON); without them, and without --agent, lines are read from stdin.
    requests: Vec<String>,
    /// Build one request: the agent.
    #[arg(long)]
    agent: Option<String>,
    /// Build one request: the tool.
    #[arg(long)]
    tool: Option<String>,
    /// Build one request: the arguments, as a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// Build one request: the session id.
    #[arg(long)]
    session: Option<String>,
}

/// The `scope` fields of a kill or revive request.
fn scope_json(args: &ScopeArgs) -> serde_json::Value {
    match (&args.agent, &args.session) {
        _ if args.all => serde_json::json!({"scope": "all"}),
        (Some(agent), Some(session)) => {
            serde_json::json!({"scope": "session", "agent": agent, "session": session})
        }
        (agent, _) => serde_json::json!({"scope": "agent", "agent": agent}),
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal permission mode like 600 or 660"))
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { Exit::Usage.into() } else { Exit::Ok.into() };
        }
    };
    let exit = match cli.command {
        Command::Check(args) => check::run(&args.paths, args.format, args.deny_warnings),
        Command::Eval(args) => eval::run(&args.policies, args.max_line_bytes, args.engine),
        Command::Export(args) => export::run(&args.paths, args.format),
        Command::Test(args) => test::run(&args.paths, args.format, args.min_coverage),
        Command::Diff(args) => diff::run(&args.old, &args.new, args.format, args.fail_on_widen),
        Command::Detectors(args) => detectors::run(args.json),
        Command::HashPassword => serve::hash_password(),
        Command::Lint(args) => match args.explain {
            Some(rule) => lint::explain(&rule),
            None => lint::run(&args.paths, args.format, args.exit_zero),
        },
        Command::Serve(args) => serve_command(*args),
        Command::Proxy(args) => proxy_command(*args),
        Command::Catalog(args) => proxy::catalog(&args.command, args.output.as_deref(), args.timeout),
        Command::Audit(AuditCommand::Verify(args)) => {
            audit::verify(&args.files, args.partial, args.head.as_deref(), &args.keys)
        }
        Command::Audit(AuditCommand::NewKey(args)) => audit::new_key(&args.file),
        Command::Audit(AuditCommand::RotateKey(args)) => {
            audit::rotate_key(&args.trail, &args.key, &args.new_key)
        }
        Command::Kill(args) => admin::kill(
            &args.scope.socket.admin_socket,
            &scope_json(&args.scope),
            &args.reason,
            args.by.as_deref(),
        ),
        Command::Revive(args) => admin::revive(&args.socket.admin_socket, &scope_json(&args)),
        Command::Kills(args) => admin::list(&args.admin_socket),
        Command::Approvals(args) => {
            admin::request(&args.admin_socket, &serde_json::json!({"op": "approvals"}))
        }
        Command::Approve(args) => admin::request(
            &args.socket.admin_socket,
            &serde_json::json!({"op": "approve", "approval": args.approval, "as": args.by, "comment": args.comment}),
        ),
        Command::Reject(args) => admin::request(
            &args.socket.admin_socket,
            &serde_json::json!({"op": "reject", "approval": args.approval, "as": args.by, "comment": args.comment}),
        ),
        Command::Query(args) => query::run(query::QueryArgs {
            socket: &args.socket,
            requests: &args.requests,
            agent: args.agent,
            tool: args.tool,
            args: args.args,
            session: args.session,
        }),
    };
    exit.into()
}

/// `proxy`'s settings from its arguments.
fn proxy_command(args: ProxyArgs) -> Exit {
    let object = |flag: &str, text: Option<String>| match text {
        None => Ok(None),
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) if value.is_object() => Ok(Some(value)),
            _ => Err(format!("{flag} must be a JSON object")),
        },
    };
    let (principal, context) =
        match (object("--principal", args.principal), object("--context", args.context)) {
            (Ok(principal), Ok(context)) => (principal, context),
            (Err(message), _) | (_, Err(message)) => {
                output::error(&message);
                return Exit::Usage;
            }
        };
    let state = match args.redis.state(args.state.as_deref()) {
        Ok(state) => state,
        Err(message) => {
            output::error(&message);
            return Exit::Usage;
        }
    };
    proxy::run(proxy::ProxyArgs {
        policies: args.policies,
        decision_socket: args.decision_socket,
        agent: args.agent,
        server: args.server,
        session: args.session,
        principal,
        context,
        state,
        audit: args.audit.map(|path| serve::AuditArgs {
            path,
            rotate_bytes: None,
            key: args.audit_key,
            sync: audit_sync(args.audit_sync),
        }),
        admin_socket: args.admin_socket,
        approval_ttl: std::time::Duration::from_secs(args.approval_ttl),
        decision_timeout: std::time::Duration::from_millis(args.decision_timeout),
        max_message_bytes: args.max_message_bytes.max(1024),
        grace: std::time::Duration::from_secs(args.shutdown_grace),
        command: args.command,
    })
}

fn audit_sync(sync: AuditSync) -> toolgate::audit::sink::Sync {
    match sync {
        AuditSync::Always => toolgate::audit::sink::Sync::Always,
        AuditSync::Os => toolgate::audit::sink::Sync::Os,
    }
}

/// `serve`'s settings from its arguments.
fn serve_command(args: ServeArgs) -> Exit {
    let state = match args.redis.state(args.state.as_deref()) {
        Ok(state) => state,
        Err(message) => {
            output::error(&message);
            return Exit::Usage;
        }
    };
    serve::run(serve::ServeArgs {
        server: toolgate::server::Config {
            max_connections: serve::connection_budget(
                args.max_connections,
                args.console.map_or(0, |_| toolgate::console::MAX_CONNECTIONS)
                    + args.metrics.map_or(0, |_| toolgate::console::metrics::MAX_CONNECTIONS),
            ),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout.max(1)),
            max_line_bytes: args.max_line_bytes,
            ..toolgate::server::Config::default()
        },
        service: toolgate::service::ServiceConfig {
            policies: args.policies,
            serving: true,
            log_decisions: args.log_decisions,
            decision_timeout: std::time::Duration::from_millis(args.decision_timeout),
        },
        socket: args.socket,
        socket_mode: args.socket_mode,
        socket_group: args.socket_group,
        admin_socket_mode: args.admin_socket_mode,
        admin_socket_group: args.admin_socket_group,
        watch: !args.no_watch,
        workers: args.workers.unwrap_or_else(serve::default_workers).max(1),
        state,
        admin_socket: args.admin_socket,
        admin_uids: args.admin_uids,
        admin_gids: args.admin_gids,
        approval_ttl: std::time::Duration::from_secs(args.approval_ttl.max(1)),
        approvals: toolgate::state::ApprovalLimits {
            per_agent: args.max_pending_per_agent,
            per_session: args.max_pending_per_session,
        },
        sessions: toolgate::state::SessionLimits {
            idle: std::time::Duration::from_secs(args.session_idle),
            max_sessions: args.max_sessions,
        },
        audit: args.audit.map(|path| serve::AuditArgs {
            path,
            rotate_bytes: args.audit_rotate_bytes,
            key: args.audit_key,
            sync: audit_sync(args.audit_sync),
        }),
        console: args.console.zip(args.console_accounts),
        console_tls: args.console_tls_cert.zip(args.console_tls_key),
        console_hosts: args.console_hosts,
        metrics: args.metrics,
        notify: args.notify,
        log_format: args.log_format,
    })
}
