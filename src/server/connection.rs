//! One client stream: read request lines, have the service answer each, in
//! order. Used by every socket connection and by `toolgate eval` on
//! standard input and output.
//!
//! Lines are answered as they arrive; the answers are flushed whenever no
//! further request is already buffered, so a client that pipelines gets
//! batched writes and a client that waits gets its answer at once. A writer
//! runs beside the reader, so a client that writes many requests before it
//! reads is still read from. No answer leaves before its audit record is
//! written.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::protocol::{
    self, LineBuffer, ParsedLine, ReadLine, WireError, WireErrorCode, read_line, write_error, write_reply,
};
use crate::service::{AuditBatch, Role, Service};

/// Flush at least this often while a client keeps pipelining.
const FLUSH_BYTES: usize = 64 * 1024;

/// Commit audit records at least this often while a client keeps
/// pipelining, so records (which hold the arguments) cannot pile up.
const MAX_PENDING_RECORDS: usize = 64;

/// The read buffer of a connection (a line longer than this is read in
/// pieces into its line buffer).
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// After shutdown starts, how long a connection waits for a request that is
/// already on its way.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(250);

/// How a stream is served.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// A client that sends no complete line (or reads no answer) for this
    /// long is closed; `None` waits forever.
    pub idle_timeout: Option<Duration>,
    /// The longest request line accepted.
    pub max_line_bytes: usize,
}

impl From<&super::Config> for Settings {
    fn from(config: &super::Config) -> Settings {
        Settings { idle_timeout: Some(config.idle_timeout), max_line_bytes: config.max_line_bytes }
    }
}

/// Tells an excess client why it is being closed, then closes. What the
/// client already sent is read and dropped for up to a second first:
/// closing a socket with unread input would reset it, and the client would
/// see a reset instead of the reason.
pub async fn refuse(mut stream: UnixStream, code: WireErrorCode, why: &str) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let error = WireError::new(code, why);
    write_error(&mut out, &Value::Null, &error);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSED_INPUT_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// The most a refused client's input is read before its connection closes.
const REFUSED_INPUT_BYTES: usize = 1 << 20;

/// Serves one stream until the client closes it, goes idle, stops reading
/// its answers, or the server shuts down (`stopped` turns true); requests
/// already sent are still answered then. An error says the stream could not
/// be read or written (or the client stopped reading); whatever was
/// decided before is recorded all the same.
///
/// Reading and writing run side by side: while answers wait for a client
/// that is still writing its requests, the server goes on reading (and
/// answering) up to [`MAX_QUEUED_BYTES`] of unsent answers, so a client may
/// pipeline thousands of requests before it reads one answer.
pub async fn serve(
    read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    service: &Service,
    settings: Settings,
    role: Role,
    stopped: Option<watch::Receiver<bool>>,
) -> std::io::Result<()> {
    let queued = Semaphore::new(MAX_QUEUED_BYTES);
    let (answers, mut to_write) = mpsc::unbounded_channel::<(Vec<u8>, u32)>();
    let (committing, mut to_confirm) = mpsc::channel::<Decided>(MAX_BATCHES_COMMITTING);
    // The reader owns the first sender, the confirmer the second: when the
    // reader is done, the confirmer and then the writer drain the rest and stop.
    // Without a trail nothing waits: answers go straight to the writer.
    let direct = service.audit().is_none().then(|| (answers.clone(), &queued));
    let reading = read_and_answer(read, service, settings, &role, stopped, committing, direct);
    let queued_ref = &queued;
    let confirming = async move {
        while let Some(decided) = to_confirm.recv().await {
            let out = decided.confirmed().await;
            if !queue(&answers, queued_ref, out).await {
                // The writer gave up on the client; the reader stops at its next batch.
                to_confirm.close();
                break;
            }
        }
    };
    let writing = async {
        while let Some((chunk, permits)) = to_write.recv().await {
            // A client that does not read its answers is closed like one
            // that does not send: it must not hold a connection forever.
            let written = flush(&mut write, &chunk, settings.idle_timeout).await;
            queued.add_permits(permits as usize);
            if let Err(error) = written {
                // Stops the reader at its next answer.
                queued.close();
                to_write.close();
                return Err(error);
            }
        }
        Ok(())
    };
    let (read_result, (), write_result) = tokio::join!(reading, confirming, writing);
    let _ = write.shutdown().await;
    write_result.and(read_result)
}

/// The most bytes of answers a connection holds for a client that has not
/// read them yet; past that, it stops reading requests until the client
/// reads.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// Where the writer takes answers from: chunks of answer lines, with the
/// permits of [`MAX_QUEUED_BYTES`] they hold.
type Answers = mpsc::UnboundedSender<(Vec<u8>, u32)>;

/// How many batches of a connection may wait for their audit records at
/// once: the connection goes on deciding while earlier records are synced.
const MAX_BATCHES_COMMITTING: usize = 4;

/// Answers whose audit records were handed to the trail: they leave only
/// once the records are confirmed written.
struct Decided {
    committing: crate::service::Committing,
    out: Vec<u8>,
    ids: Vec<Value>,
}

impl Decided {
    /// The answers, or, if the records may not be in the trail, an error
    /// (a deny) for each of them.
    async fn confirmed(self) -> Vec<u8> {
        let Decided { committing, mut out, ids } = self;
        if let Err(failure) = committing.confirmed().await {
            out.clear();
            let error = failure.wire_error();
            for id in &ids {
                write_error(&mut out, id, &error);
            }
        }
        out
    }
}

/// The reading half of [`serve`]: reads lines, has them answered, commits
/// their audit records, and queues the answers for the writer.
async fn read_and_answer(
    read: impl AsyncRead + Unpin,
    service: &Service,
    settings: Settings,
    role: &Role,
    mut stopped: Option<watch::Receiver<bool>>,
    committing: mpsc::Sender<Decided>,
    direct: Option<(Answers, &Semaphore)>,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read);
    let mut line = LineBuffer::default();
    let mut out = Vec::with_capacity(4096);
    let mut ids = Vec::new();
    let mut batch = AuditBatch::default();
    let max = settings.max_line_bytes;
    let mut stopping = false;
    let mut failure = None;
    loop {
        stopping = stopping || stopped.as_ref().is_some_and(|s| *s.borrow());
        // `line` is cleared only after a complete line: a read cancelled by
        // the shutdown signal keeps what it had and resumes.
        let read = if reader.buffer().contains(&b'\n') {
            // A pipelined line is already here: no timer, no shutdown wait.
            Ok(read_line(&mut reader, &mut line, max).await)
        } else {
            // Once the server stops, requests already sent are still
            // answered: the wait shrinks from the idle timeout to a grace.
            let wait = if stopping { Some(SHUTDOWN_GRACE) } else { settings.idle_timeout };
            tokio::select! {
                biased;
                read = within(wait, read_line(&mut reader, &mut line, max)) => read,
                () = signalled(&mut stopped), if !stopping => continue,
            }
        };
        match read {
            Err(_idle) => {
                if !stopping {
                    tracing::debug!("closing idle connection");
                }
                break;
            }
            Ok(Err(error)) => {
                // What was already decided is still recorded and answered.
                failure = Some(error);
                break;
            }
            Ok(Ok(ReadLine::Eof)) => break,
            Ok(Ok(ReadLine::Line)) if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
            Ok(Ok(ReadLine::Line)) => {
                let parsed = match std::str::from_utf8(line.bytes()) {
                    Ok(text) => protocol::parse_line(text),
                    Err(_) => ParsedLine {
                        id: Value::Null,
                        kind: None,
                        op: Err(WireError::new(WireErrorCode::InvalidJson, "request line is not UTF-8")),
                    },
                };
                let engine = service.engine();
                let reply = service.handle(&engine, &parsed, role, &mut batch).await;
                write_reply(&mut out, &parsed.id, &reply);
                drop(reply);
                ids.push(parsed.id);
            }
            Ok(Ok(ReadLine::TooLong)) => {
                let message = format!("request line is longer than {max} bytes; skipped to the next line");
                let error = WireError::new(WireErrorCode::LineTooLong, message);
                let reply = service.refuse(&Value::Null, error, &mut batch);
                write_reply(&mut out, &Value::Null, &reply);
                ids.push(Value::Null);
            }
        }
        line.clear();
        let full = out.len() >= FLUSH_BYTES || batch.len() >= MAX_PENDING_RECORDS;
        if (reader.buffer().is_empty() || full) && !out.is_empty() {
            let handed = match &direct {
                Some((answers, queued)) => {
                    ids.clear();
                    queue(answers, queued, std::mem::take(&mut out)).await
                }
                None => committing.send(hand_over(service, &mut out, &mut ids, &mut batch)).await.is_ok(),
            };
            if !handed {
                // The writer gave up on the client: nothing more to answer.
                break;
            }
        }
    }
    if !out.is_empty() {
        match &direct {
            Some((answers, queued)) => {
                queue(answers, queued, out).await;
            }
            None => {
                let _ = committing.send(hand_over(service, &mut out, &mut ids, &mut batch)).await;
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Hands answers to the writer once there is room for them; `false` if the
/// writer has stopped.
async fn queue(answers: &Answers, queued: &Semaphore, chunk: Vec<u8>) -> bool {
    let permits = u32::try_from(chunk.len().min(MAX_QUEUED_BYTES)).unwrap_or(u32::MAX);
    match queued.acquire_many(permits).await {
        Ok(permit) => {
            permit.forget();
            answers.send((chunk, permits)).is_ok()
        }
        Err(_closed) => false,
    }
}

/// Writes the answers, giving up after `wait`.
async fn flush(
    write: &mut (impl AsyncWrite + Unpin),
    out: &[u8],
    wait: Option<Duration>,
) -> std::io::Result<()> {
    let written = within(wait, async {
        write.write_all(out).await?;
        write.flush().await
    })
    .await;
    written.unwrap_or_else(|_| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client reads no answers"))
    })
}

/// Hands the batch's audit records to the trail and its answers to the
/// confirmer, which lets them leave only once the records are written: no
/// answer leaves without its record.
fn hand_over(service: &Service, out: &mut Vec<u8>, ids: &mut Vec<Value>, batch: &mut AuditBatch) -> Decided {
    Decided { committing: service.submit(batch), out: std::mem::take(out), ids: std::mem::take(ids) }
}

/// `future`, given at most `wait` (forever without one).
async fn within<T>(
    wait: Option<Duration>,
    future: impl Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    match wait {
        Some(wait) => tokio::time::timeout(wait, future).await,
        None => Ok(future.await),
    }
}

/// Resolves when the shutdown signal changes; never without one.
async fn signalled(stopped: &mut Option<watch::Receiver<bool>>) {
    let changed = match stopped {
        Some(receiver) => receiver.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}
